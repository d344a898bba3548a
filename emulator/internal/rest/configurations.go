package rest

import (
	"net/http"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// handlePutConfiguration creates (201) or, with If-Match, updates (200) a
// configuration (service-api §9).
func (s *Server) handlePutConfiguration(w http.ResponseWriter, r *http.Request) {
	id := pathID(r, "id")
	var c iothub.Configuration
	if err := decode(r, &c); err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.ID == "" {
		c.ID = id
	}
	if c.ID != id {
		s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "the body's id %q does not match the path's %q", c.ID, id))
		return
	}
	out, created, err := s.hub.PutConfiguration(r.Context(), c, r.Header.Get("If-Match"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	setETag(w, out.ETag)
	writeJSON(w, status, out)
}

func (s *Server) handleGetConfiguration(w http.ResponseWriter, r *http.Request) {
	c, err := s.hub.Configuration(pathID(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, c.ETag)
	writeJSON(w, http.StatusOK, c)
}

// handleListConfigurations is GET /configurations?top=N; no top, or one
// outside 1–100, lists them all.
func (s *Server) handleListConfigurations(w http.ResponseWriter, r *http.Request) {
	top, _ := strconv.Atoi(r.URL.Query().Get("top"))
	if top < 1 || top > iothub.MaxConfigurations {
		top = 0
	}
	writeJSON(w, http.StatusOK, s.hub.Configurations(top))
}

// handleDeleteConfiguration answers 204; If-Match is optional (the Node
// SDK sends none).
func (s *Server) handleDeleteConfiguration(w http.ResponseWriter, r *http.Request) {
	if err := s.hub.DeleteConfiguration(r.Context(), pathID(r, "id"), r.Header.Get("If-Match")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleTestConfigurationQueries(w http.ResponseWriter, r *http.Request) {
	var t iothub.ConfigurationQueriesTest
	if err := decode(r, &t); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.hub.TestConfigurationQueries(t))
}

// handleApplyConfigurationContent is POST
// /devices/{id}/applyConfigurationContent: modulesContent applied to an
// IoT Edge device's module twins now (service-api §9).
func (s *Server) handleApplyConfigurationContent(w http.ResponseWriter, r *http.Request) {
	var c iothub.ConfigurationContent
	if err := decode(r, &c); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.hub.ApplyConfigurationContent(r.Context(), pathID(r, "id"), c); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
