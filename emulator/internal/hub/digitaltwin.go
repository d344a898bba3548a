package hub

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// DigitalTwin returns a device's IoT Plug and Play digital twin and the
// twin's etag.
func (h *Hub) DigitalTwin(deviceID string) (map[string]any, string, error) {
	t, err := h.Twin(deviceID)
	if err != nil {
		return nil, "", err
	}
	return iothub.DigitalTwin(t), t.ETag, nil
}

// UpdateDigitalTwin applies a digital twin update (a JSON Patch) as a
// change of the desired properties, told to the device like any other,
// and returns the twin's new etag.
func (h *Hub) UpdateDigitalTwin(ctx context.Context, deviceID string, ops []iothub.JSONPatchOp, ifMatch string) (string, error) {
	t, err := h.Twin(deviceID)
	if err != nil {
		return "", err
	}
	patch, err := iothub.DigitalTwinDesired(ops, t.Properties.Desired.Props, iothub.Components(t.Properties))
	if err != nil {
		return "", err
	}
	out, err := h.UpdateTwin(ctx, deviceID, TwinPatch{Desired: patch}, ifMatch, false)
	if err != nil {
		return "", err
	}
	return out.ETag, nil
}
