// Package rest is the hub's service face: the IoT Hub service REST API
// (api-version 2021-04-12, also 2020-09-30) over HTTPS, routed with chi. It
// is the only package that imports chi. Handlers decode, call the hub and
// encode; the rules live in the hub.
package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// APIVersions are the api-version values the emulator serves; they all
// behave as 2021-04-12. Anything else, and no value, is 400
// InvalidProtocolVersion (service-api §0.3).
var APIVersions = []string{"2021-04-12", "2020-09-30", "2020-03-13", "2019-10-01", "2019-03-30", "2018-06-30", "2018-04-01", "2017-11-08-preview", "2017-06-30", "2016-11-14"}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Config configures the REST face. The zero value is the default.
type Config struct {
	// Logger receives structured logs. Zero means slog.Default().
	Logger *slog.Logger
}

// Server serves the service API.
type Server struct {
	hub *hub.Hub
	log *slog.Logger
	mux http.Handler
}

// New returns the REST face of h.
func New(h *hub.Hub, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{hub: h, log: cfg.Logger}
	s.mux = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.StripSlashes, s.noEscapedSlash, s.apiVersion)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, iothub.Errorf(iothub.NotFound, "The requested resource %s does not exist.", r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, iothub.Errorf(iothub.MethodNotAllowed, "%s is not supported on %s.", r.Method, r.URL.Path))
	})
	read, write, svc := s.need(hub.RegistryRead), s.need(hub.RegistryWrite), s.need(hub.ServiceConnect)
	r.With(svc, s.op(iothub.OpQuery)).Post("/devices/query", s.handleQuery)
	r.With(read, s.op(iothub.OpRegistry)).Get("/devices", s.handleListDevices)
	r.With(write, s.op(iothub.OpRegistry)).Post("/devices", s.handleBulk)
	r.With(read, s.op(iothub.OpRegistry)).Get("/devices/{id}", s.handleGetDevice)
	r.With(write, s.op(iothub.OpRegistry)).Put("/devices/{id}", s.handlePutDevice)
	r.With(write, s.op(iothub.OpRegistry)).Delete("/devices/{id}", s.handleDeleteDevice)
	r.With(write, s.op(iothub.OpConfigurations)).Post("/devices/{id}/applyConfigurationContent", s.handleApplyConfigurationContent)
	r.With(read, s.op(iothub.OpRegistry)).Get("/devices/{id}/modules", s.handleListModules)
	r.With(read, s.op(iothub.OpRegistry)).Get("/devices/{id}/modules/{mid}", s.handleGetModule)
	r.With(write, s.op(iothub.OpRegistry)).Put("/devices/{id}/modules/{mid}", s.handlePutModule)
	r.With(write, s.op(iothub.OpRegistry)).Delete("/devices/{id}/modules/{mid}", s.handleDeleteModule)
	r.With(read, s.op(iothub.OpRegistry)).Get("/statistics/devices", s.handleRegistryStatistics)
	r.With(svc, s.op(iothub.OpRegistry)).Get("/statistics/service", s.handleServiceStatistics)
	r.With(svc, s.op(iothub.OpTwinRead)).Get("/twins/{id}", s.handleGetTwin)
	r.With(svc, s.op(iothub.OpTwinUpdate)).Patch("/twins/{id}", s.handleUpdateTwin(false))
	r.With(svc, s.op(iothub.OpTwinUpdate)).Put("/twins/{id}", s.handleUpdateTwin(true))
	r.With(svc).Post("/twins/{id}/methods", s.handleInvokeMethod)
	r.With(svc, s.op(iothub.OpTwinRead)).Get("/twins/{id}/modules/{mid}", s.handleGetTwin)
	r.With(svc, s.op(iothub.OpTwinUpdate)).Patch("/twins/{id}/modules/{mid}", s.handleUpdateTwin(false))
	r.With(svc, s.op(iothub.OpTwinUpdate)).Put("/twins/{id}/modules/{mid}", s.handleUpdateTwin(true))
	r.With(svc).Post("/twins/{id}/modules/{mid}/methods", s.handleInvokeMethod)
	r.With(svc, s.op(iothub.OpTwinRead)).Get("/digitaltwins/{id}", s.handleGetDigitalTwin)
	r.With(svc, s.op(iothub.OpTwinUpdate)).Patch("/digitaltwins/{id}", s.handleUpdateDigitalTwin)
	r.With(svc).Post("/digitaltwins/{id}/commands/{cmd}", s.handleDigitalTwinCommand)
	r.With(svc).Post("/digitaltwins/{id}/components/{comp}/commands/{cmd}", s.handleDigitalTwinCommand)
	r.With(read, s.op(iothub.OpConfigurations)).Get("/configurations", s.handleListConfigurations)
	r.With(read, s.op(iothub.OpConfigurations)).Post("/configurations/testQueries", s.handleTestConfigurationQueries)
	r.With(read, s.op(iothub.OpConfigurations)).Get("/configurations/{id}", s.handleGetConfiguration)
	r.With(write, s.op(iothub.OpConfigurations)).Put("/configurations/{id}", s.handlePutConfiguration)
	r.With(write, s.op(iothub.OpConfigurations)).Delete("/configurations/{id}", s.handleDeleteConfiguration)
	r.With(svc, s.op(iothub.OpJobs)).Get("/jobs/v2/query", s.handleQueryJobs)
	r.With(svc, s.op(iothub.OpJobs)).Put("/jobs/v2/{id}", s.handleCreateJob)
	r.With(svc, s.op(iothub.OpJobs)).Get("/jobs/v2/{id}", s.handleGetJob)
	r.With(svc, s.op(iothub.OpJobs)).Post("/jobs/v2/{id}/cancel", s.handleCancelJob)
	r.With(svc, s.op(iothub.OpC2DSend)).Delete("/devices/{id}/commands", s.handlePurgeC2D)
	s.deviceRoutes(r)
	r.With(svc).Get("/emulator/devices/{id}/messages", s.handleMessages)
	r.With(svc).Post("/emulator/devices/{id}/messages/devicebound", s.handleSendC2D)
	r.With(svc).Get("/emulator/activity", s.handleActivity)
	r.With(svc).Get("/emulator/tier", s.handleGetTier)
	r.With(svc).Put("/emulator/tier", s.handlePutTier)
	r.With(svc).Get("/emulator/faults", s.handleListFaults)
	r.With(svc).Post("/emulator/faults", s.handleAddFault)
	r.With(svc).Delete("/emulator/faults", s.handleClearFault)
	r.With(svc).Delete("/emulator/faults/{fid}", s.handleClearFault)
	return r
}

// op admits a request through the emulated tier's throttle of its
// operation and the faults (Hub.Admit). Methods are admitted by their
// handlers, which know the payload's size.
func (s *Server) op(op iothub.Operation) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := s.hub.Admit(r.Context(), op, chi.URLParam(r, "id"), 0); err != nil {
				s.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// noEscapedSlash refuses a path with an escaped "/" in it: no device or
// module id may hold one, and decoded it would turn /devices/a%2Fx into
// module x of device a (hub keys join the two with "/").
func (s *Server) noEscapedSlash(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.RawPath, "%2F") || strings.Contains(r.URL.RawPath, "%2f") {
			s.writeError(w, r, iothub.Errorf(iothub.DeviceNotFound, "no device or module id holds a '/': %s", r.URL.RawPath))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// currentVersionQuery is the query most requests carry, checked without
// parsing.
const currentVersionQuery = "api-version=" + iothub.APIVersion

// apiVersion rejects requests without a served api-version.
func (s *Server) apiVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == currentVersionQuery {
			next.ServeHTTP(w, r)
			return
		}
		v := r.URL.Query().Get("api-version")
		for _, ok := range APIVersions {
			if v == ok {
				next.ServeHTTP(w, r)
				return
			}
		}
		s.writeError(w, r, iothub.Errorf(iothub.InvalidProtocolVersion, "BadRequest: api-version %q is not supported; use %s", v, iothub.APIVersion))
	})
}

// need checks the request's SAS token for rights (service-api §1.4).
func (s *Server) need(rights hub.Rights) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := s.hub.AuthorizeService(r.Header.Get("Authorization"), rights); err != nil {
				s.writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// pathID returns a percent-decoded path parameter (device ids may hold
// escaped characters, service-api §0.2).
func pathID(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if r.URL.RawPath != "" {
		if d, err := url.PathUnescape(v); err == nil {
			return d
		}
	}
	return v
}

// decode reads a JSON body into v, keeping numbers exact.
func decode(r *http.Request, v any) error {
	buf := bodyPool.Get().(*bytes.Buffer)
	defer putBody(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, maxBody+1)); err != nil {
		return iothub.Errorf(iothub.ArgumentInvalid, "the request body could not be read")
	}
	body := buf.Bytes()
	if len(body) > maxBody {
		return iothub.Errorf(iothub.MessageTooLarge, "the request body is larger than %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return iothub.Errorf(iothub.ArgumentNull, "the request body is empty")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return iothub.Errorf(iothub.IotHubFormatError, "the request body is not valid JSON: %v", err)
	}
	return nil
}

// bodyPool recycles request-body buffers; decoded values never keep
// references into them (encoding/json copies, RawMessage included).
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBody(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bodyPool.Put(b)
	}
}

// jsonContentType is shared by every response: header values are never
// modified after they are set.
var jsonContentType = []string{"application/json; charset=utf-8"}

// writeJSON writes v with the content type every client needs
// (service-api §0.5).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"Message":"ErrorCode:ServerError;the response could not be encoded"}`)
	}
	writeBody(w, status, b)
}

// writeBody writes a JSON body that is already encoded.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes err as IoT Hub does: its status, the iothub-errorcode
// header and envelope A (service-api §2.1).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toError(err)
	s.logError(r, e)
	setErrorHeaders(w, e)
	writeJSON(w, e.Code.HTTPStatus(), e.RegistryEnvelope(hub.TrackingID(), time.Now()))
}

// writeMethodError writes err in envelope B, the direct-method form.
func (s *Server) writeMethodError(w http.ResponseWriter, r *http.Request, err error) {
	e := toError(err)
	s.logError(r, e)
	setErrorHeaders(w, e)
	writeJSON(w, e.Code.HTTPStatus(), e.MethodEnvelope(hub.TrackingID(), time.Now()))
}

// setErrorHeaders writes the error code header and, for a throttled
// request, Retry-After in whole seconds.
func setErrorHeaders(w http.ResponseWriter, e *iothub.Error) {
	w.Header().Set(iothub.HeaderErrorCode, e.Code.String())
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
}

func (s *Server) logError(r *http.Request, e *iothub.Error) {
	lvl := slog.LevelInfo
	if e.Code.HTTPStatus() >= 500 && e.Code != iothub.GatewayTimeout {
		lvl = slog.LevelError
	}
	s.log.Log(r.Context(), lvl, "request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code.String(), "message", e.Message)
	key := pathID(r, "id")
	if mid := pathID(r, "mid"); mid != "" && key != "" {
		key = hub.Key(key, mid)
	}
	s.hub.Record(hub.ActivityError, key, fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, e.Code), e.Code.HTTPStatus())
}

func toError(err error) *iothub.Error {
	var e *iothub.Error
	if errors.As(err, &e) {
		return e
	}
	return iothub.Errorf(iothub.ServerError, "%v", err)
}

// setETag sets the quoted ETag header (service-api §0.5).
func setETag(w http.ResponseWriter, etag string) { w.Header().Set("ETag", `"`+etag+`"`) }
