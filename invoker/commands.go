package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
)

func requireDevice(id string) error {
	if id == "" {
		return fmt.Errorf("%w: -device is required", errUsage)
	}
	return nil
}

// explain turns the hub's errors into a sentence about the device.
func explain(id string, err error) error {
	switch iothub.CodeOf(err) {
	case iothub.DeviceNotFound:
		return fmt.Errorf("device %q is not registered in this hub: %w", id, err)
	case iothub.DeviceNotOnline:
		return fmt.Errorf("device %q is not connected (or has not subscribed to direct methods): %w", id, err)
	case iothub.GatewayTimeout:
		return fmt.Errorf("device %q did not answer in time: %w", id, err)
	case iothub.IotHubUnauthorizedAccess:
		return fmt.Errorf("the hub refused the connection string's credentials: %w", err)
	}
	return err
}

func parseJSON(name, s string) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	if !json.Valid([]byte(s)) {
		return nil, fmt.Errorf("%w: -%s is not valid JSON", errUsage, name)
	}
	return json.RawMessage(s), nil
}

func cmdInvoke(ctx context.Context, e *env, args []string) error {
	id := e.flags.String("device", "", "device id")
	method := e.flags.String("method", "", "method name")
	payload := e.flags.String("payload", "", "JSON payload")
	resp := e.flags.Int("response-timeout", 30, "seconds to wait for the device's answer (5-300)")
	conn := e.flags.Int("connect-timeout", 0, "seconds to wait for the device to connect (0-300)")
	if err := e.parse(args); err != nil {
		return err
	}
	if err := requireDevice(*id); err != nil {
		return err
	}
	if *method == "" {
		return fmt.Errorf("%w: -method is required", errUsage)
	}
	p, err := parseJSON("payload", *payload)
	if err != nil {
		return err
	}
	res, err := e.svc.InvokeMethod(ctx, *id, iothub.MethodRequest{MethodName: *method, Payload: p,
		ResponseTimeoutInSeconds: resp, ConnectTimeoutInSeconds: conn})
	if err != nil {
		return explain(*id, err)
	}
	e.print(res, fmt.Sprintf("%s on %s: status %d, payload %s", *method, *id, res.Status, res.Payload))
	return nil
}

// cmdReboot is the tutorial's service app: invoke rebootDevice, print the
// answer, then watch the twin until reported rebootTime is newer than the
// call.
func cmdReboot(ctx context.Context, e *env, args []string) error {
	id := e.flags.String("device", "", "device id")
	timeout := e.flags.Duration("timeout", 2*time.Minute, "how long to wait for the device to report its reboot")
	conn := e.flags.Int("connect-timeout", 0, "seconds to wait for the device to connect (0-300)")
	if err := e.parse(args); err != nil {
		return err
	}
	if err := requireDevice(*id); err != nil {
		return err
	}
	called := time.Now().UTC()
	res, err := e.svc.InvokeMethod(ctx, *id, iothub.MethodRequest{MethodName: "rebootDevice", ConnectTimeoutInSeconds: conn})
	if err != nil {
		return explain(*id, err)
	}
	if *e.output == "text" {
		fmt.Fprintf(e.stdout, "rebootDevice on %s: status %d, payload %s\n", *id, res.Status, res.Payload)
	}
	if res.Status >= 300 {
		return fmt.Errorf("device %q refused the reboot with status %d", *id, res.Status)
	}
	if *e.output == "text" {
		fmt.Fprintf(e.stdout, "waiting for %s to report rebootTime...\n", *id)
	}
	at, err := watchTwin(ctx, e.svc, *id, *timeout, 2*time.Second, func(t iothub.Twin) (string, bool) {
		s, _ := t.Properties.Reported.Props["rebootTime"].(string)
		rt, err := time.Parse(time.RFC3339Nano, s)
		return s, err == nil && rt.After(called)
	})
	if err != nil {
		return fmt.Errorf("%w (waiting for %s to report a rebootTime after %s)", err, *id, called.Format(time.RFC3339Nano))
	}
	e.print(map[string]any{"deviceId": *id, "method": res, "rebootTime": at},
		fmt.Sprintf("%s rebooted: reported rebootTime %s", *id, at))
	return nil
}

// cmdFirmware invokes firmwareUpdate and follows properties.reported.firmware
// until the device runs the new version.
func cmdFirmware(ctx context.Context, e *env, args []string) error {
	id := e.flags.String("device", "", "device id")
	version := e.flags.String("version", "", "firmware version to install")
	timeout := e.flags.Duration("timeout", 5*time.Minute, "how long to wait for the update to finish")
	if err := e.parse(args); err != nil {
		return err
	}
	if err := requireDevice(*id); err != nil {
		return err
	}
	if *version == "" {
		return fmt.Errorf("%w: -version is required", errUsage)
	}
	payload, _ := json.Marshal(map[string]string{"version": *version})
	res, err := e.svc.InvokeMethod(ctx, *id, iothub.MethodRequest{MethodName: "firmwareUpdate", Payload: payload})
	if err != nil {
		return explain(*id, err)
	}
	if *e.output == "text" {
		fmt.Fprintf(e.stdout, "firmwareUpdate on %s: status %d, payload %s\n", *id, res.Status, res.Payload)
	}
	if res.Status >= 300 {
		return fmt.Errorf("device %q refused the update with status %d", *id, res.Status)
	}
	last := ""
	// Poll often enough to show each stage of the update.
	_, err = watchTwin(ctx, e.svc, *id, *timeout, 250*time.Millisecond, func(t iothub.Twin) (string, bool) {
		fw, _ := t.Properties.Reported.Props["firmware"].(map[string]any)
		status, _ := fw["status"].(string)
		v, _ := fw["version"].(string)
		if line := status + " " + v; line != last && *e.output == "text" {
			fmt.Fprintf(e.stdout, "  firmware: %s (version %s)\n", status, v)
			last = line
		}
		return v, status == "current" && v == *version
	})
	if err != nil {
		return fmt.Errorf("%w (waiting for %s to run firmware %s)", err, *id, *version)
	}
	e.print(map[string]any{"deviceId": *id, "method": res, "firmware": *version},
		fmt.Sprintf("%s now runs firmware %s", *id, *version))
	return nil
}

// watchTwin polls the twin, backing off from 250 ms to maxWait, until
// done says so or timeout passes.
func watchTwin(ctx context.Context, svc *iotservice.Client, id string, timeout, maxWait time.Duration, done func(iothub.Twin) (string, bool)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 250 * time.Millisecond
	for {
		t, err := svc.Twin(ctx, id)
		if err == nil {
			if v, ok := done(t); ok {
				return v, nil
			}
		} else if ctx.Err() == nil && iothub.CodeOf(err) == iothub.DeviceNotFound {
			return "", explain(id, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("timed out after %s", timeout)
		case <-time.After(wait):
		}
		wait = min(wait*2, maxWait)
	}
}

func cmdTwin(ctx context.Context, e *env, sub string, args []string) error {
	id := e.flags.String("device", "", "device id")
	desired := e.flags.String("desired", "", "update: desired properties patch (JSON object; null deletes)")
	tags := e.flags.String("tags", "", "update: tags patch (JSON object; null deletes)")
	etag := e.flags.String("etag", "", "update: only if the twin's etag still matches")
	if err := e.parse(args); err != nil {
		return err
	}
	if err := requireDevice(*id); err != nil {
		return err
	}
	var t iothub.Twin
	var err error
	switch sub {
	case "show":
		t, err = e.svc.Twin(ctx, *id)
	case "update":
		patch, perr := parsePatch(*tags, *desired)
		if perr != nil {
			return perr
		}
		t, err = e.svc.UpdateTwin(ctx, *id, patch, *etag)
	default:
		return fmt.Errorf("%w: twin show|update", errUsage)
	}
	if err != nil {
		return explain(*id, err)
	}
	b, _ := json.MarshalIndent(t, "", "  ")
	e.print(t, string(b))
	return nil
}

// parsePatch builds a twin patch from the -tags and -desired flags; at
// least one is needed.
func parsePatch(tags, desired string) (iothub.TwinPatch, error) {
	d, err := parseObject("desired", desired)
	if err != nil {
		return iothub.TwinPatch{}, err
	}
	tg, err := parseObject("tags", tags)
	if err != nil {
		return iothub.TwinPatch{}, err
	}
	if d == nil && tg == nil {
		return iothub.TwinPatch{}, fmt.Errorf("%w: give -desired or -tags", errUsage)
	}
	return iothub.NewTwinPatch(tg, d), nil
}

func parseObject(name, s string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	m, err := iothub.DecodeObject([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("%w: -%s: %v", errUsage, name, err)
	}
	return m, nil
}

func cmdDevice(ctx context.Context, e *env, sub string, args []string) error {
	id := e.flags.String("device", "", "device id")
	top := e.flags.Int("top", 0, "list: at most this many devices")
	if err := e.parse(args); err != nil {
		return err
	}
	if sub != "list" {
		if err := requireDevice(*id); err != nil {
			return err
		}
	}
	switch sub {
	case "list":
		ds, err := e.svc.Devices(ctx, *top)
		if err != nil {
			return err
		}
		var b strings.Builder
		for _, d := range ds {
			fmt.Fprintf(&b, "%-32s %-9s %s\n", d.DeviceID, d.Status, d.ConnectionState)
		}
		e.print(ds, b.String())
		return nil
	case "create", "show":
		var d iothub.Device
		var err error
		if sub == "create" {
			d, err = e.svc.CreateDevice(ctx, iothub.Device{DeviceID: *id})
		} else {
			d, err = e.svc.Device(ctx, *id)
		}
		if err != nil {
			return explain(*id, err)
		}
		cs, _ := connstr.ParseService(*e.conn)
		host := cs.HostName
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h // a port in the service HostName is the HTTPS port, not the device's
		}
		dcs := connstr.Device{HostName: host, DeviceID: d.DeviceID, SharedAccessKey: d.Authentication.SymmetricKey.PrimaryKey}
		e.print(map[string]any{"device": d, "connectionString": dcs.String()},
			fmt.Sprintf("%s (%s, %s)\nconnection string: %s", d.DeviceID, d.Status, d.ConnectionState, dcs))
		return nil
	case "delete":
		if err := e.svc.DeleteDevice(ctx, *id); err != nil {
			return explain(*id, err)
		}
		e.print(map[string]string{"deleted": *id}, "deleted "+*id)
		return nil
	}
	return fmt.Errorf("%w: device create|show|delete|list", errUsage)
}

func cmdQuery(ctx context.Context, e *env, args []string) error {
	pageSize := e.flags.Int("page-size", 0, "rows per page (the hub's default is 100)")
	if err := e.parse(args); err != nil {
		return err
	}
	q := strings.Join(e.flags.Args(), " ")
	if q == "" {
		return fmt.Errorf("%w: query \"SELECT ... FROM devices ...\"", errUsage)
	}
	rows, err := e.svc.Query(ctx, q, *pageSize)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range rows {
		b.Write(r)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "(%d rows)", len(rows))
	e.print(rows, b.String())
	return nil
}
