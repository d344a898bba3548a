package rest

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// The emulator-only resilience API: the emulated tier, and faults on
// demand. Azure has neither; tests use them to provoke what Azure does
// now and then (README, "Testing resilience").

// handleGetTier is GET /emulator/tier.
func (s *Server) handleGetTier(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hub.Tier())
}

// handlePutTier is PUT /emulator/tier: {"tier": "S1", "units": 2,
// "window": "1m"}; {"tier": ""} turns emulation off.
func (s *Server) handlePutTier(w http.ResponseWriter, r *http.Request) {
	var t iothub.TierSettings
	if err := decode(r, &t); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.hub.SetTier(t); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.hub.Tier())
}

// handleListFaults is GET /emulator/faults: the last 100, newest last.
func (s *Server) handleListFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hub.Faults())
}

// handleAddFault is POST /emulator/faults.
func (s *Server) handleAddFault(w http.ResponseWriter, r *http.Request) {
	var f iothub.Fault
	if err := decode(r, &f); err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.hub.AddFault(f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// handleClearFault is DELETE /emulator/faults/{fid}, or every fault
// without one.
func (s *Server) handleClearFault(w http.ResponseWriter, r *http.Request) {
	if err := s.hub.ClearFault(chi.URLParam(r, "fid")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
