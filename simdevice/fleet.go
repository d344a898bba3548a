package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
)

// runFleet runs cfg.count devices in one process: it registers the
// missing identities, connects the devices cfg.parallel at a time with a
// progress line, then logs a summary every cfg.summary until ctx ends.
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
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(cfg.parallel, 1))
	start := time.Now()
	var failed atomic.Pointer[error]
	for i := 1; i <= cfg.count && ctx.Err() == nil && failed.Load() == nil; i++ {
		id := cfg.prefix + strconv.Itoa(i)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, err := ensureDevice(ctx, svc, id)
			if err != nil {
				err = fmt.Errorf("register %s: %w", id, err)
				failed.CompareAndSwap(nil, &err)
				<-sem
				return
			}
			cs := connstr.Device{HostName: hubHost, DeviceID: id, SharedAccessKey: key, GatewayHostName: cfg.gateway}
			s := newSim(cs, cfg.opts, cfg.behaviour, log, st)
			err = s.connect(ctx)
			<-sem
			if err == nil {
				s.serve(ctx)
			}
		}()
		if i%100 == 0 || i == cfg.count {
			fmt.Fprintf(progress, "\rconnecting: %d/%d started, %d connected (%.0f/s)", i, cfg.count, st.connected.Load(),
				float64(st.connected.Load())/time.Since(start).Seconds())
		}
	}
	if err := failed.Load(); err != nil {
		fmt.Fprintln(progress)
		cancelAll()
		wg.Wait()
		return *err
	}
	for ctx.Err() == nil && st.connected.Load() < int64(cfg.count) {
		fmt.Fprintf(progress, "\rconnecting: %d/%d connected (%.0f/s)   ", st.connected.Load(), cfg.count,
			float64(st.connected.Load())/time.Since(start).Seconds())
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Fprintf(progress, "\rconnected: %d/%d in %s\n", st.connected.Load(), cfg.count, time.Since(start).Round(time.Millisecond))
	log.Info("fleet connected", "devices", cfg.count, "took", time.Since(start).Round(time.Millisecond).String())
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

// ensureDevice returns the primary key of id, registering it if missing.
func ensureDevice(ctx context.Context, svc *iotservice.Client, id string) (string, error) {
	d, err := svc.Device(ctx, id)
	if iothub.CodeOf(err) == iothub.DeviceNotFound {
		d, err = svc.CreateDevice(ctx, iothub.Device{DeviceID: id})
	}
	if err != nil {
		return "", err
	}
	return d.Authentication.SymmetricKey.PrimaryKey, nil
}
