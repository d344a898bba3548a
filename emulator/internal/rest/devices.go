package rest

import (
	"net/http"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// handleListDevices is GET /devices?top=N; top outside 1–1000 means 1000
// (service-api §3.6).
func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request) {
	top, err := strconv.Atoi(r.URL.Query().Get("top"))
	if err != nil || top < 1 || top > 1000 {
		top = 1000
	}
	writeJSON(w, http.StatusOK, s.hub.Devices(top))
}

func (s *Server) handleGetDevice(w http.ResponseWriter, r *http.Request) {
	d, err := s.hub.Device(pathID(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, d.ETag)
	writeJSON(w, http.StatusOK, d)
}

// handlePutDevice creates or replaces a device; 200 either way, never 201
// (service-api §3.3).
func (s *Server) handlePutDevice(w http.ResponseWriter, r *http.Request) {
	id := pathID(r, "id")
	var d iothub.Device
	if err := decode(r, &d); err != nil {
		s.writeError(w, r, err)
		return
	}
	if d.DeviceID == "" {
		d.DeviceID = id
	}
	if d.DeviceID != id {
		s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "the body's deviceId %q does not match the path's %q", d.DeviceID, id))
		return
	}
	out, err := s.hub.PutDevice(r.Context(), d, r.Header.Get("If-Match"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setETag(w, out.ETag)
	writeJSON(w, http.StatusOK, out)
}

// handleBulk is POST /devices: 200 when every entry was applied, else 400
// BulkRegistryOperationFailure with the failed entries (service-api §3.7).
func (s *Server) handleBulk(w http.ResponseWriter, r *http.Request) {
	var entries []iothub.ExportImportDevice
	if err := decode(r, &entries); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.hub.Bulk(r.Context(), entries)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if !res.IsSuccessful {
		status = http.StatusBadRequest
		code := iothub.BulkRegistryOperationFailure.String()
		w.Header().Set(iothub.HeaderErrorCode, code)
		w.Header().Set("IotHubErrorCode", code)
	}
	writeJSON(w, status, res)
}

// handleDeleteDevice answers 204 (service-api §3.5).
func (s *Server) handleDeleteDevice(w http.ResponseWriter, r *http.Request) {
	if err := s.hub.DeleteDevice(r.Context(), pathID(r, "id"), r.Header.Get("If-Match")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRegistryStatistics(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hub.RegistryStatistics())
}

func (s *Server) handleServiceStatistics(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hub.ServiceStatistics())
}

// handleMessages is an emulator-only convenience: the device's 100 most
// recent messages in the telemetry log the built-in Event
// Hubs-compatible endpoint serves, which is how Azure delivers them.
// handleActivity is GET /emulator/activity?after=N: the hub's activity
// feed after sequence number N, oldest first (the dashboard's live feed).
func (s *Server) handleActivity(w http.ResponseWriter, r *http.Request) {
	after, err := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	if err != nil && r.URL.Query().Get("after") != "" {
		s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "after must be a sequence number"))
		return
	}
	out := s.hub.Activities(after, 500)
	if out == nil {
		out = []hub.Activity{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	msgs, err := s.hub.Messages(pathID(r, "id"), 100)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, msgs)
}
