package rest

import (
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// moduleKey is the hub's key of the module named by the path.
func moduleKey(r *http.Request) string { return hub.Key(pathID(r, "id"), pathID(r, "mid")) }

func (s *Server) handleListModules(w http.ResponseWriter, r *http.Request) {
	ms, err := s.hub.Modules(pathID(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ms)
}

func (s *Server) handleGetModule(w http.ResponseWriter, r *http.Request) {
	m, err := s.hub.Module(pathID(r, "id"), pathID(r, "mid"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, m.ETag)
	writeJSON(w, http.StatusOK, m)
}

// handlePutModule creates (201) or replaces (200) a module (service-api §3.8).
func (s *Server) handlePutModule(w http.ResponseWriter, r *http.Request) {
	var m iothub.Module
	if err := decode(r, &m); err != nil {
		s.writeError(w, r, err)
		return
	}
	id, mid := pathID(r, "id"), pathID(r, "mid")
	if m.DeviceID == "" {
		m.DeviceID = id
	}
	if m.ModuleID == "" {
		m.ModuleID = mid
	}
	if m.DeviceID != id || m.ModuleID != mid {
		s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "the body's deviceId and moduleId do not match the path"))
		return
	}
	out, created, err := s.hub.PutModule(r.Context(), m, r.Header.Get("If-Match"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, out.ETag)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
}

func (s *Server) handleDeleteModule(w http.ResponseWriter, r *http.Request) {
	if err := s.hub.DeleteModule(r.Context(), pathID(r, "id"), pathID(r, "mid"), r.Header.Get("If-Match")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
