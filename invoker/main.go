// Command invoker is the service side of the device-management demo and a
// small IoT Hub CLI modelled on "az iot hub". It runs against Azure IoT Hub
// or the emulator; only the connection string (and, for the emulator, the
// CA file) differ.
//
//	invoker reboot   -device ID                     invoke rebootDevice, then wait for the reported rebootTime
//	invoker firmware -device ID -version V          invoke firmwareUpdate, then follow properties.reported.firmware
//	invoker invoke   -device ID -method M [-payload JSON]
//	invoker twin show|update -device ID [-desired JSON] [-tags JSON] [-etag E]
//	invoker device create|show|delete -device ID;  invoker device list
//	invoker query "SELECT * FROM devices WHERE ..."
//	invoker job reboot|method|twin -condition "tags.site = 'lab'" ...   schedule a job and follow it
//	invoker job show|cancel -id ID;  invoker job list
//	invoker config create -id ID -condition "tags.site = 'lab'" -desired JSON   an automatic device configuration, followed until applied
//	invoker config show|delete -id ID;  invoker config list
//	invoker dt show -device ID;  invoker dt command -device ID [-component C] -command NAME [-payload JSON]   IoT Plug and Play
//	invoker messages -device ID                     recent telemetry (emulator only)
//	invoker c2d send -device ID -body TEXT [-property k=v]   a cloud-to-device message, over AMQP; c2d purge
//
// Common flags: -connection-string (IOTHUB_CONNECTION_STRING), -ca-file
// (IOTHUB_CA_FILE), -amqp-addr (IOTHUB_AMQP_ADDR), -output text|json
// (IOTHUB_OUTPUT). Every flag has an IOTHUB_<FLAG> twin.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
)

func main() {
	os.Exit(cmdline.Main("invoker", os.Stderr, func(ctx context.Context) error {
		return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}))
}

var errUsage = fmt.Errorf("%w: invoker reboot|firmware|invoke|twin|device|query|job|config|dt|messages|c2d [flags]; run a command with -h for its flags", cmdline.ErrUsage)

// env is what every command gets: its flags, a client and the output.
type env struct {
	flags  *cmdline.Flags
	conn   *string
	caFile *string
	amqp   *string
	output *string
	stdout io.Writer
	svc    *iotservice.Client
}

func newEnv(name string, stdout, stderr io.Writer) *env {
	f := cmdline.NewFlags("invoker "+name, "IOTHUB_")
	f.SetOutput(stderr)
	return &env{
		flags:  f,
		conn:   f.String("connection-string", "", "service connection string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)"),
		caFile: f.String("ca-file", "", "PEM CA file to trust instead of the system roots (the emulator's ca.pem)"),
		amqp:   f.String("amqp-addr", "", "host:port of the hub's AMQP, where cloud-to-device messages go (default: the connection string's host on 5671)"),
		output: f.String("output", "text", "text or json"),
		stdout: stdout,
	}
}

// parse parses the command's flags and makes the service client.
func (e *env) parse(args []string) error {
	if err := e.flags.Parse(args); err != nil {
		return err
	}
	if *e.output != "text" && *e.output != "json" {
		return fmt.Errorf("%w: -output must be text or json", errUsage)
	}
	if *e.conn == "" {
		return fmt.Errorf("%w: -connection-string (or IOTHUB_CONNECTION_STRING) is required", errUsage)
	}
	cs, err := connstr.ParseService(*e.conn)
	if err != nil {
		return err
	}
	e.svc, err = iotservice.New(cs, iotservice.Options{CAFile: *e.caFile, AMQPAddr: *e.amqp})
	return err
}

// print writes v as JSON with -output json, or text otherwise.
func (e *env) print(v any, text string) {
	if *e.output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(v)
		return
	}
	fmt.Fprintln(e.stdout, strings.TrimRight(text, "\n"))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	sub := ""
	if (cmd == "twin" || cmd == "device" || cmd == "job" || cmd == "c2d" || cmd == "config" || cmd == "dt") && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub, rest = rest[0], rest[1:]
	}
	e := newEnv(strings.TrimSpace(cmd+" "+sub), stdout, stderr)
	switch cmd {
	case "reboot":
		return cmdReboot(ctx, e, rest)
	case "firmware":
		return cmdFirmware(ctx, e, rest)
	case "invoke":
		return cmdInvoke(ctx, e, rest)
	case "twin":
		return cmdTwin(ctx, e, sub, rest)
	case "device":
		return cmdDevice(ctx, e, sub, rest)
	case "query":
		return cmdQuery(ctx, e, rest)
	case "job":
		return cmdJob(ctx, e, sub, rest)
	case "c2d":
		return cmdC2D(ctx, e, sub, rest)
	case "config":
		return cmdConfig(ctx, e, sub, rest)
	case "dt":
		return cmdDigitalTwin(ctx, e, sub, rest)
	case "messages":
		return cmdMessages(ctx, e, rest)
	}
	return fmt.Errorf("%w (unknown command %q)", errUsage, cmd)
}
