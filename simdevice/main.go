// Command simdevice runs simulated IoT devices against Azure IoT Hub or the
// emulator. Each device answers rebootDevice (answer, go offline, come back,
// report rebootTime), firmwareUpdate (report progress through
// properties.reported.firmware) and factoryReset, applies desired
// telemetryInterval and sends telemetry. Devices announce an IoT Plug and
// Play model (-model-id), so their digital twins carry it.
//
//	simdevice -connection-string "HostName=...;DeviceId=...;SharedAccessKey=..." [-ca-file ca.pem]
//	simdevice -count 1000 -service-connection-string "HostName=...;SharedAccessKeyName=...;..." [-gateway-host-name localhost:8883]
//
// Every flag has an environment-variable twin, SIMDEVICE_<FLAG>.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotdevice"
)

func main() {
	os.Exit(cmdline.Main("simdevice", os.Stderr, func(ctx context.Context) error {
		return run(ctx, os.Args[1:], os.Stderr)
	}))
}

type config struct {
	conn      string
	service   string
	gateway   string
	count     int
	prefix    string
	parallel  int
	summary   time.Duration
	opts      iotdevice.Options
	behaviour behaviour
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	f := cmdline.NewFlags("simdevice", "SIMDEVICE_")
	f.SetOutput(stderr)
	var cfg config
	conn := f.Secret("connection-string", "device connection string (one device)")
	svc := f.Secret("service-connection-string", "service connection string, to register the devices of -count")
	gw := f.String("gateway-host-name", "", "host[:port] the devices connect to, when it differs from the hub's HostName")
	count := f.Int("count", 0, "run this many devices in one process (needs -service-connection-string)")
	prefix := f.String("id-prefix", "sim-", "device id prefix in fleet mode: sim-1, sim-2, ...")
	parallel := f.Int("connect-parallelism", 64, "devices connecting at once in fleet mode")
	summary := f.Duration("summary-interval", 30*time.Second, "how often fleet mode logs a summary")
	caFile := f.String("ca-file", "", "PEM CA file to trust instead of the system roots (the emulator's ca.pem)")
	transport := f.String("transport", "mqtt", "how devices reach the hub: mqtt (8883), mqttws (443), amqp (5671), amqpws (443) or https (443: telemetry and cloud-to-device messages only)")
	ws := f.Bool("websocket", false, "the same as -transport mqttws")
	httpsHost := f.String("https-host", "", "host:port of the hub's HTTPS, where uploadLogs begins its file upload (default: the host on 443)")
	reboot := f.Duration("reboot-delay", 5*time.Second, "how long a simulated reboot keeps the device offline")
	telemetry := f.Duration("telemetry-interval", 10*time.Second, "time between telemetry messages (0: none)")
	step := f.Duration("firmware-step-delay", 2*time.Second, "time between firmware-update stages")
	fw := f.String("firmware-version", "1.0.0", "firmware version reported at start")
	model := f.String("model-id", "dtmi:iothubemulator:SimulatedDevice;1", "IoT Plug and Play model the devices announce (empty: none)")
	logFlags := f.LogFlags()
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.Logger(stderr)
	if err != nil {
		return err
	}
	tr, err := iotdevice.ParseTransport(*transport)
	if err != nil {
		return fmt.Errorf("%w: %v", cmdline.ErrUsage, err)
	}
	if *ws {
		tr = iotdevice.MQTTWS
	}
	cfg = config{conn: *conn, service: *svc, gateway: *gw, count: *count, prefix: *prefix, parallel: *parallel, summary: *summary,
		opts:      iotdevice.Options{CAFile: *caFile, Transport: tr, HTTPSHost: *httpsHost, ModelID: *model, Logger: log},
		behaviour: behaviour{RebootDelay: *reboot, TelemetryInterval: *telemetry, FirmwareVersion: *fw, StepDelay: *step}}
	if cfg.count > 0 {
		return runFleet(ctx, cfg, log, stderr)
	}
	if cfg.conn == "" {
		return fmt.Errorf("%w: give -connection-string for one device, or -count with -service-connection-string for a fleet", cmdline.ErrUsage)
	}
	cs, err := connstr.ParseDevice(cfg.conn)
	if err != nil {
		return err
	}
	if cfg.gateway != "" {
		cs.GatewayHostName = cfg.gateway
	}
	log.Info("simulated device starting", "device", cs.DeviceID, "host", cs.HostName)
	return newSim(cs, cfg.opts, cfg.behaviour, log, &stats{}).run(ctx)
}
