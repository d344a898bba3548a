package rest

import (
	"bytes"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/iothub-emulator/iothub-emulator/api/httpdevice"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// The device side of the HTTPS API (next-wave-protocols §3): a device's
// telemetry and its cloud-to-device messages, each request authenticated
// as the device (its SAS token, a policy with DeviceConnect, or its
// client certificate), not as a service.

// deviceRoutes registers the device routes; both spellings of
// devicebound are served, as the SDKs differ.
func (s *Server) deviceRoutes(r chi.Router) {
	r = r.With(s.deviceAuth)
	r.Post("/devices/{id}/messages/events", s.handleDeviceEvents)
	r.Post("/devices/{id}/files", s.handleCreateFileUpload)
	r.Post("/devices/{id}/files/notifications", s.handleFileUploadStatus)
	r.Post("/devices/{id}/files/notifications/{cid}", s.handleFileUploadStatus)
	for _, bound := range []string{"devicebound", "deviceBound"} {
		p := "/devices/{id}/messages/" + bound
		r.With(s.op(iothub.OpC2DReceive)).Get(p, s.handleReceiveC2D)
		r.Delete(p+"/{lock}", s.handleSettleC2D)
		r.Post(p+"/{lock}/abandon", s.handleAbandonC2D)
	}
}

// deviceAuth authenticates the device the path names.
func (s *Server) deviceAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := pathID(r, "id")
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h // the token's scope names the host alone
		}
		var err error
		switch tok := r.Header.Get("Authorization"); {
		case tok != "":
			_, err = s.hub.AuthenticateDevice(host, id, "", tok)
		case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
			_, err = s.hub.AuthenticateX509(host, id, "", r.TLS.PeerCertificates)
		default:
			err = iothub.Errorf(iothub.IotHubUnauthorizedAccess, "the request has no Authorization header and no client certificate")
		}
		if err != nil {
			s.writeError(w, r, iothub.Errorf(iothub.IotHubUnauthorizedAccess, "%v", toError(err).Message))
			return
		}
		// A connect outage refuses requests too.
		if err := s.hub.AdmitDeviceRequest(r.Context(), id); err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleDeviceEvents is POST /devices/{id}/messages/events: one event,
// its properties in iothub-* headers, or a batch (204).
func (s *Server) handleDeviceEvents(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, httpdevice.MaxEventsSize+1)); err != nil {
		s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "the request body could not be read"))
		return
	}
	if buf.Len() > httpdevice.MaxEventsSize {
		s.writeError(w, r, iothub.Errorf(iothub.MessageTooLarge, "the events are larger than %d bytes", httpdevice.MaxEventsSize))
		return
	}
	var events []hub.DeviceEvent
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == httpdevice.BatchContentType {
		batch, err := httpdevice.ParseBatch(buf.Bytes())
		if err != nil {
			s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "%v", err))
			return
		}
		for _, ev := range batch {
			events = append(events, hub.DeviceEvent{Properties: ev.Properties, Body: ev.Body})
		}
	} else {
		headers := make(map[string]string, len(r.Header))
		for name, vs := range r.Header {
			headers[name] = vs[0]
		}
		events = []hub.DeviceEvent{{Properties: httpdevice.EventProperties(headers), Body: buf.Bytes()}}
	}
	if err := s.hub.SendEvents(r.Context(), pathID(r, "id"), events); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleCreateFileUpload is POST /devices/{id}/files: a correlation id
// and a SAS for the blob (next-wave-protocols §4.1).
func (s *Server) handleCreateFileUpload(w http.ResponseWriter, r *http.Request) {
	var req iothub.FileUploadRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.hub.CreateFileUpload(r.Context(), pathID(r, "id"), req.BlobName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleFileUploadStatus is POST /devices/{id}/files/notifications, with
// the correlation id in the body, or in the path as Node sends it (204).
func (s *Server) handleFileUploadStatus(w http.ResponseWriter, r *http.Request) {
	var st iothub.FileUploadStatus
	if err := decode(r, &st); err != nil {
		s.writeError(w, r, err)
		return
	}
	if cid := pathID(r, "cid"); cid != "" {
		st.CorrelationID = cid
	}
	if err := s.hub.CompleteFileUpload(r.Context(), pathID(r, "id"), st); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleReceiveC2D is GET .../messages/devicebound: the oldest message
// not locked, locked now, with its properties in headers (200), or 204.
func (s *Server) handleReceiveC2D(w http.ResponseWriter, r *http.Request) {
	timeout := hub.DefaultC2DLockTimeout
	if v := r.URL.Query().Get(httpdevice.LockTimeout); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 || n > 300 {
			s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "%s must be 5 to 300 seconds", httpdevice.LockTimeout))
			return
		}
		timeout = time.Duration(n) * time.Second
	}
	id := pathID(r, "id")
	m, ok, err := s.hub.ReceiveC2D(r.Context(), id, timeout)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	c := httpdevice.C2D{Lock: m.Lock, MessageID: m.MessageID, To: "/devices/" + id + "/messages/devicebound", CorrelationID: m.CorrelationID,
		UserID: m.UserID, Ack: m.Ack, ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Enqueued: m.EnqueuedTime,
		DeliveryCount: m.DeliveryCount, SequenceNumber: m.SequenceNumber, Properties: m.Properties}
	if m.ExpirySet {
		c.Expiry = m.ExpiryTime
	}
	h := w.Header()
	for _, kv := range c.Headers() {
		h[kv[0]] = []string{kv[1]}
	}
	h.Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m.Body)
}

// handleSettleC2D is DELETE .../devicebound/{lock}: complete, or reject
// with the bare reject flag (204).
func (s *Server) handleSettleC2D(w http.ResponseWriter, r *http.Request) {
	outcome := hub.C2DComplete
	if _, ok := r.URL.Query()["reject"]; ok {
		outcome = hub.C2DReject
	}
	s.settle(w, r, outcome)
}

// handleAbandonC2D is POST .../devicebound/{lock}/abandon (204).
func (s *Server) handleAbandonC2D(w http.ResponseWriter, r *http.Request) {
	s.settle(w, r, hub.C2DAbandon)
}

// settle settles the message the path's lock token locks; an If-Match,
// quoted or not, must name the same lock.
func (s *Server) settle(w http.ResponseWriter, r *http.Request, outcome hub.C2DOutcome) {
	lock := chi.URLParam(r, "lock")
	if im := r.Header.Get("If-Match"); im != "" && !strings.EqualFold(httpdevice.LockFromIfMatch(im), lock) {
		s.writeError(w, r, iothub.Errorf(iothub.DeviceMessageLockLost, "If-Match %s does not name the lock token of the path, %s", im, lock))
		return
	}
	if err := s.hub.SettleC2D(r.Context(), pathID(r, "id"), lock, outcome); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
