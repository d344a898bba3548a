package rest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

func (s *Server) handleGetDigitalTwin(w http.ResponseWriter, r *http.Request) {
	dt, etag, err := s.hub.DigitalTwin(pathID(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, etag)
	writeJSON(w, http.StatusOK, dt)
}

// handleUpdateDigitalTwin applies a JSON Patch and answers 202 with the
// new etag.
func (s *Server) handleUpdateDigitalTwin(w http.ResponseWriter, r *http.Request) {
	var ops []iothub.JSONPatchOp
	if err := decode(r, &ops); err != nil {
		s.writeError(w, r, err)
		return
	}
	etag, err := s.hub.UpdateDigitalTwin(r.Context(), pathID(r, "id"), ops, r.Header.Get("If-Match"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, etag)
	w.WriteHeader(http.StatusAccepted)
}

// handleDigitalTwinCommand invokes a command, root-level or of a component
// (the direct method "{component}*{command}"): the body is the payload,
// the timeouts are query parameters, and the device's status comes back
// in x-ms-command-statuscode beside its payload.
func (s *Server) handleDigitalTwinCommand(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, iothub.MaxMethodPayload+1))
	if err != nil {
		s.writeMethodError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "the request body could not be read"))
		return
	}
	if len(body) > iothub.MaxMethodPayload {
		s.writeMethodError(w, r, iothub.Errorf(iothub.MessageTooLarge, "the payload is larger than %d bytes", iothub.MaxMethodPayload))
		return
	}
	if len(body) > 0 && !json.Valid(body) {
		s.writeMethodError(w, r, iothub.Errorf(iothub.IotHubFormatError, "the payload is not JSON"))
		return
	}
	name := chi.URLParam(r, "cmd")
	if c := chi.URLParam(r, "comp"); c != "" {
		name = c + "*" + name
	}
	if err := s.hub.Admit(r.Context(), iothub.OpMethod, chi.URLParam(r, "id"), len(body)); err != nil {
		s.writeMethodError(w, r, err)
		return
	}
	req := iothub.MethodRequest{MethodName: name, Payload: body}
	q := r.URL.Query()
	for param, dst := range map[string]**int{"responseTimeoutInSeconds": &req.ResponseTimeoutInSeconds, "connectTimeoutInSeconds": &req.ConnectTimeoutInSeconds} {
		if v := q.Get(param); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				s.writeMethodError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "%s must be a whole number of seconds", param))
				return
			}
			*dst = &n
		}
	}
	res, err := s.hub.InvokeMethod(r.Context(), pathID(r, "id"), req)
	if err != nil {
		s.writeMethodError(w, r, err)
		return
	}
	payload := []byte(res.Payload)
	if len(payload) == 0 {
		payload = []byte("null")
	}
	w.Header().Set("x-ms-command-statuscode", strconv.Itoa(res.Status))
	w.Header().Set("x-ms-request-id", hub.TrackingID())
	writeBody(w, http.StatusOK, payload)
}
