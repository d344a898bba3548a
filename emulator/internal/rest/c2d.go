package rest

import (
	"net/http"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// handleSendC2D is POST /emulator/devices/{id}/messages/devicebound.
func (s *Server) handleSendC2D(w http.ResponseWriter, r *http.Request) {
	var req iothub.CloudToDeviceMessage
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	m := hub.C2DMessage{Body: []byte(req.Body), MessageID: req.MessageID, CorrelationID: req.CorrelationID, UserID: req.UserID,
		ContentType: req.ContentType, ContentEncoding: req.ContentEncoding, Ack: req.Ack, Properties: req.Properties}
	if req.ExpiryTimeUTC != nil {
		m.ExpiryTime = req.ExpiryTimeUTC.Time
		if !m.ExpiryTime.After(time.Now()) {
			s.writeError(w, r, iothub.Errorf(iothub.ArgumentInvalid, "expiryTimeUtc is in the past"))
			return
		}
	}
	out, err := s.hub.SendC2D(r.Context(), pathID(r, "id"), m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"lockToken": out.LockToken, "messageId": out.MessageID, "expiryTimeUtc": iothub.NewTime(out.ExpiryTime)})
}

// handlePurgeC2D is DELETE /devices/{id}/commands (service-api §3.10).
func (s *Server) handlePurgeC2D(w http.ResponseWriter, r *http.Request) {
	id := pathID(r, "id")
	n, err := s.hub.PurgeC2D(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"totalMessagesPurged": n, "deviceId": id, "moduleId": nil})
}
