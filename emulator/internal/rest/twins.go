package rest

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// twinKey names the device or module twin of the path.
func twinKey(r *http.Request) string {
	if chi.URLParam(r, "mid") != "" {
		return moduleKey(r)
	}
	return pathID(r, "id")
}

func (s *Server) handleGetTwin(w http.ResponseWriter, r *http.Request) {
	t, err := s.hub.Twin(twinKey(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, t.ETag)
	writeJSON(w, http.StatusOK, t)
}

// handleUpdateTwin is PATCH (merge) or PUT (replace) /twins/{id}
// (service-api §4.4, §4.5).
func (s *Server) handleUpdateTwin(replace bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b iothub.TwinPatch
		if err := decode(r, &b); err != nil {
			s.writeError(w, r, err)
			return
		}
		patch := hub.PatchOf(b)
		t, err := s.hub.UpdateTwin(r.Context(), twinKey(r), patch, r.Header.Get("If-Match"), replace)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		setETag(w, t.ETag)
		writeJSON(w, http.StatusOK, t)
	}
}

// handleInvokeMethod is POST /twins/{id}/methods: 200 with the device's
// status and payload, or an error in the direct-method envelope
// (service-api §5).
func (s *Server) handleInvokeMethod(w http.ResponseWriter, r *http.Request) {
	var req iothub.MethodRequest
	if err := decode(r, &req); err != nil {
		s.writeMethodError(w, r, err)
		return
	}
	if err := s.hub.Admit(r.Context(), iothub.OpMethod, chi.URLParam(r, "id"), len(req.Payload)); err != nil {
		s.writeMethodError(w, r, err)
		return
	}
	res, err := s.hub.InvokeMethod(r.Context(), twinKey(r), req)
	if err != nil {
		s.writeMethodError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, res.AppendJSON(make([]byte, 0, len(res.Payload)+32)))
}
