package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// SeedFile is the schema of a seed file: devices to create at start-up,
// and consumer groups of the built-in endpoint besides $Default (as
// -consumer-groups). Devices that already exist are left as they are.
//
//	{"devices": [{"deviceId": "sim-1", "primaryKey": "<base64>", "secondaryKey": "<base64>",
//	              "status": "enabled", "tags": {"site": "lab"}, "desired": {"telemetryInterval": 5}}],
//	 "consumerGroups": ["analytics"]}
//
// Keys left out are generated.
type SeedFile struct {
	Devices        []SeedDevice `json:"devices"`
	ConsumerGroups []string     `json:"consumerGroups"`
}

// SeedDevice is one device of a seed file.
type SeedDevice struct {
	DeviceID     string              `json:"deviceId"`
	PrimaryKey   string              `json:"primaryKey"`
	SecondaryKey string              `json:"secondaryKey"`
	Status       iothub.DeviceStatus `json:"status"`
	Tags         map[string]any      `json:"tags"`
	Desired      map[string]any      `json:"desired"`
}

// seed creates the seed file's devices and returns its consumer groups.
func seed(h *hub.Hub, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seed file: %w", err)
	}
	defer f.Close()
	var sf SeedFile
	d := json.NewDecoder(f)
	d.UseNumber()
	d.DisallowUnknownFields()
	if err := d.Decode(&sf); err != nil {
		return nil, fmt.Errorf("seed file %s: %w", path, err)
	}
	ctx := context.Background()
	for _, sd := range sf.Devices {
		if _, err := h.Device(sd.DeviceID); err == nil {
			continue
		}
		dev := iothub.Device{DeviceID: sd.DeviceID, Status: sd.Status,
			Authentication: iothub.Authentication{SymmetricKey: iothub.SymmetricKey{PrimaryKey: sd.PrimaryKey, SecondaryKey: sd.SecondaryKey}}}
		if _, err := h.PutDevice(ctx, dev, ""); err != nil {
			return nil, fmt.Errorf("seed device %q: %w", sd.DeviceID, err)
		}
		if sd.Tags != nil || sd.Desired != nil {
			if _, err := h.UpdateTwin(ctx, sd.DeviceID, hub.TwinPatch{Tags: sd.Tags, Desired: sd.Desired}, "", false); err != nil {
				return nil, fmt.Errorf("seed twin %q: %w", sd.DeviceID, err)
			}
		}
	}
	return sf.ConsumerGroups, nil
}
