package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
)

// runFleet runs cfg.count devices in one process: it registers the
// missing identities with bulk registry requests, connects the devices
// cfg.parallel at a time with a progress line, then logs a summary every
// cfg.summary until ctx ends.
func runFleet(ctx context.Context, cfg config, log *slog.Logger, progress io.Writer) error {
	if cfg.service == "" {
		return errors.New("-count needs -service-connection-string to register the devices")
	}
	scs, err := connstr.ParseService(cfg.service)
	if err != nil {
		return err
	}
	svc, err := iotservice.New(scs, iotservice.Options{CAFile: cfg.opts.CAFile})
	if err != nil {
		return err
	}
	hubHost := scs.HostName
	if h, _, err := net.SplitHostPort(hubHost); err == nil {
		hubHost = h
	}
	st := &stats{}
	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	ids := make([]string, cfg.count)
	for i := range ids {
		ids[i] = cfg.prefix + strconv.Itoa(i+1)
	}
	prog := cmdline.NewProgress(progress)
	keys, err := registerFleet(ctx, svc, ids, prog)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(cfg.parallel, 1))
	start := time.Now()
	for i, id := range ids {
		if ctx.Err() != nil {
			break
		}
		i++
		key := keys[id]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := connstr.Device{HostName: hubHost, DeviceID: id, SharedAccessKey: key, GatewayHostName: cfg.gateway}
			s := newSim(cs, cfg.opts, cfg.behaviour, log, st)
			err := s.connect(ctx)
			<-sem
			if err == nil {
				s.serve(ctx)
			} else if ctx.Err() == nil {
				st.refused.Add(1)
				log.Warn("device gave up", "device", id, "error", err)
			}
		}()
		if i%100 == 0 || i == cfg.count {
			prog.Update(fmt.Sprintf("connecting: %d/%d started, %d connected", i, cfg.count, st.connected.Load()))
		}
	}
	for ctx.Err() == nil && st.connected.Load()+st.refused.Load() < int64(cfg.count) {
		prog.Update(fmt.Sprintf("connecting: %d/%d connected", st.connected.Load(), cfg.count))
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	prog.Done()
	fmt.Fprintf(progress, "connected: %d/%d in %s (%.0f/s)\n", st.connected.Load(), cfg.count, time.Since(start).Round(time.Millisecond),
		float64(st.connected.Load())/time.Since(start).Seconds())
	if n := st.refused.Load(); n > 0 {
		fmt.Fprintf(progress, "gave up: %d devices whose credentials the hub refused\n", n)
	}
	log.Info("fleet connected", "devices", cfg.count, "took", time.Since(start).Round(time.Millisecond).String())
	st.watch(log, cfg.count)
	t := time.NewTicker(cfg.summary)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			log.Info("fleet summary", "connected", st.connected.Load(), "methods", st.methods.Load(),
				"reboots", st.reboots.Load(), "telemetry", st.telemetry.Load(), "errors", st.errors.Load())
		}
	}
}

// registerFleet makes sure every id is registered and returns their
// primary keys. It creates them a hundred at a time with bulk registry
// requests, with keys made here, and reads the keys of those that
// already existed.
func registerFleet(ctx context.Context, svc *iotservice.Client, ids []string, prog *cmdline.Progress) (map[string]string, error) {
	keys := make(map[string]string, len(ids))
	start := time.Now()
	for first := 0; first < len(ids); first += iothub.MaxBulkDevices {
		batch := ids[first:min(first+iothub.MaxBulkDevices, len(ids))]
		entries := make([]iothub.ExportImportDevice, len(batch))
		for i, id := range batch {
			auth := iothub.Authentication{Type: iothub.AuthSAS, SymmetricKey: iothub.SymmetricKey{PrimaryKey: newKey(), SecondaryKey: newKey()}}
			entries[i] = iothub.ExportImportDevice{ID: id, ImportMode: iothub.ImportCreate, Authentication: &auth}
		}
		res, err := svc.Bulk(ctx, entries)
		if err != nil && iothub.CodeOf(err) != iothub.BulkRegistryOperationFailure {
			return nil, fmt.Errorf("register devices: %w", err)
		}
		existing := map[string]bool{}
		for _, e := range res.Errors {
			if e.ErrorCode != iothub.DeviceAlreadyExists.String() {
				return nil, fmt.Errorf("register %s: %s %s", e.DeviceID, e.ErrorCode, e.ErrorStatus)
			}
			existing[e.DeviceID] = true
		}
		for _, e := range entries {
			if existing[e.ID] {
				d, err := svc.Device(ctx, e.ID)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", e.ID, err)
				}
				keys[e.ID] = d.Authentication.SymmetricKey.PrimaryKey
				continue
			}
			keys[e.ID] = e.Authentication.SymmetricKey.PrimaryKey
		}
		prog.Update(fmt.Sprintf("registering: %d/%d", len(keys), len(ids)))
	}
	prog.Done()
	if len(ids) > 0 {
		prog.Update(fmt.Sprintf("registered %d devices in %s", len(ids), time.Since(start).Round(time.Millisecond)))
		prog.Done()
	}
	return keys, nil
}

// newKey makes a device key: 32 random bytes in base64.
func newKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}
