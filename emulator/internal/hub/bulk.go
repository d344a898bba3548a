package hub

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Bulk applies a bulk registry request (POST /devices, service-api §3.7).
// A malformed request fails as a whole and changes nothing: no entries,
// more than 100, an invalid id or the same identity twice. Otherwise each
// entry is applied on its own and durably; the result lists the entries
// that failed, in request order.
func (h *Hub) Bulk(ctx context.Context, entries []iothub.ExportImportDevice) (iothub.BulkResult, error) {
	if len(entries) == 0 {
		return iothub.BulkResult{}, iothub.Errorf(iothub.ArgumentInvalid, "the request holds no devices")
	}
	if len(entries) > iothub.MaxBulkDevices {
		return iothub.BulkResult{}, iothub.Errorf(iothub.TooManyDevices, "a bulk request holds at most %d devices, not %d", iothub.MaxBulkDevices, len(entries))
	}
	seen := make(map[string]bool, len(entries))
	for _, en := range entries {
		if !iothub.ValidID(en.ID) {
			return iothub.BulkResult{}, iothub.Errorf(iothub.ArgumentInvalid, "Device ID %q is invalid", en.ID)
		}
		if en.ModuleID != "" && !iothub.ValidID(en.ModuleID) {
			return iothub.BulkResult{}, iothub.Errorf(iothub.ArgumentInvalid, "Module ID %q is invalid", en.ModuleID)
		}
		k := Key(en.ID, en.ModuleID)
		if seen[k] {
			return iothub.BulkResult{}, iothub.Errorf(iothub.DeviceDefinedMultipleTimes, "%s is defined more than once in the request", k)
		}
		seen[k] = true
	}
	// Entries name distinct identities, so they run concurrently and share
	// commits: devices first, then modules, which may need their device.
	errs := make([]error, len(entries))
	for _, modules := range []bool{false, true} {
		var wg sync.WaitGroup
		for i, en := range entries {
			if (en.ModuleID != "") != modules {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = h.bulkEntry(ctx, en)
			}()
		}
		wg.Wait()
	}
	res := iothub.BulkResult{IsSuccessful: true, Errors: []iothub.BulkError{}, Warnings: []iothub.BulkWarning{}}
	for i, err := range errs {
		if err == nil {
			continue
		}
		en := entries[i]
		var e *iothub.Error
		if !errors.As(err, &e) {
			e = &iothub.Error{Code: iothub.ServerError, Message: err.Error()}
		}
		be := iothub.BulkError{DeviceID: en.ID, ErrorCode: e.Code.String(), ErrorStatus: e.Message}
		if en.ModuleID != "" {
			be.ModuleID = &en.ModuleID
		}
		res.IsSuccessful = false
		res.Errors = append(res.Errors, be)
	}
	h.log.Info("bulk registry operation", "entries", len(entries), "failed", len(res.Errors))
	return res, nil
}

// bulkEntry applies one entry. A missing importMode is createOrUpdate,
// the first value of the hub's enum.
func (h *Hub) bulkEntry(ctx context.Context, en iothub.ExportImportDevice) error {
	mode := en.ImportMode
	if mode == "" {
		mode = iothub.ImportCreateOrUpdate
	}
	patch := TwinPatch{Tags: en.Tags}
	if en.Properties != nil {
		if len(en.Properties.Reported) > 0 {
			return iothub.Errorf(iothub.ArgumentInvalid, "reported properties cannot be set by the service")
		}
		patch.Desired = en.Properties.Desired
	}
	for _, m := range []map[string]any{patch.Tags, patch.Desired} {
		if err := iothub.ValidatePatch(m); err != nil {
			return err
		}
	}
	key := Key(en.ID, en.ModuleID)
	ifMatch := ""
	if mode.MatchesETag() {
		tag := en.ETag
		if mode == iothub.ImportUpdateTwinIfMatchETag {
			tag = en.TwinETag
		}
		tag = strings.Trim(tag, `"`)
		if tag == "" {
			return iothub.Errorf(iothub.PreconditionFailed, "importMode %s needs an etag", mode)
		}
		ifMatch = `"` + tag + `"`
	}
	hasTwin := patch.Tags != nil || patch.Desired != nil
	switch mode {
	case iothub.ImportDelete, iothub.ImportDeleteIfMatchETag:
		if en.ModuleID != "" {
			return h.DeleteModule(ctx, en.ID, en.ModuleID, ifMatch)
		}
		return h.DeleteDevice(ctx, en.ID, ifMatch)
	case iothub.ImportUpdateTwin, iothub.ImportUpdateTwinIfMatchETag:
		if !hasTwin {
			return nil
		}
		_, err := h.UpdateTwin(ctx, key, patch, ifMatch, false)
		return err
	}

	_, err := h.entry(key)
	exists := err == nil
	switch {
	case !exists && (mode == iothub.ImportUpdate || mode == iothub.ImportUpdateIfMatchETag):
		return err
	case exists && mode == iothub.ImportCreate:
		ifMatch = "" // create answers DeviceAlreadyExists
	case exists && ifMatch == "":
		ifMatch = "*"
	case !exists:
		ifMatch = ""
	}
	d := iothub.Device{DeviceID: en.ID, Status: en.Status, StatusReason: en.StatusReason}
	if en.Authentication != nil {
		d.Authentication = *en.Authentication
	}
	if en.Capabilities != nil {
		d.Capabilities = *en.Capabilities
	}
	// A created identity gets its twin in its first commit: the entry is
	// applied whole or not at all. A replaced one gets it in a second
	// commit, so a retry of a failed entry finds the identity and updates.
	var created *TwinPatch
	if ifMatch == "" && hasTwin {
		created = &patch
	}
	if en.ModuleID != "" {
		_, _, err = h.putModule(ctx, iothub.Module{DeviceID: en.ID, ModuleID: en.ModuleID, Authentication: d.Authentication}, ifMatch, created)
	} else {
		_, err = h.putDevice(ctx, d, ifMatch, created)
	}
	if err != nil || !hasTwin || created != nil {
		return err
	}
	_, err = h.UpdateTwin(ctx, key, patch, "", false)
	return err
}
