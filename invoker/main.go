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
//	invoker monitor [-device ID] [-start latest|earliest|TIME]   follow telemetry live, like az iot hub monitor-events
//	invoker messages -device ID [-count N] [-since D]   a device's recent telemetry
//	invoker files [-count N] [-download DIR]         follow file upload notifications, downloading the files
//	invoker c2d send -device ID -body TEXT [-property k=v]   a cloud-to-device message, over AMQP; c2d purge
//	invoker fault add -kind K [-device ID] ...       a fault on demand (emulator only); fault list; fault clear
//	invoker tier [-set S1 -units N]                  show or set the emulated tier (emulator only)
//
// Telemetry is read through the hub's built-in Event Hubs-compatible
// endpoint, found from the connection string by the hub's redirect, or
// given with -eventhub-connection-string.
//
// Common flags: -connection-string (IOTHUB_CONNECTION_STRING), -ca-file
// (IOTHUB_CA_FILE), -amqp-addr (IOTHUB_AMQP_ADDR), -output text|json
// (IOTHUB_OUTPUT). Every flag has an IOTHUB_<FLAG> twin. The commands are
// in the commands table.
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

// command is one invoker command; commands is the one place a command is
// added.
type command struct {
	name  string
	subs  []string // its subcommands, if it has any
	usage string
	run   func(ctx context.Context, e *env, sub string, args []string) error
}

func noSub(f func(context.Context, *env, []string) error) func(context.Context, *env, string, []string) error {
	return func(ctx context.Context, e *env, _ string, args []string) error { return f(ctx, e, args) }
}

var commands = []command{
	{"reboot", nil, "-device ID   invoke rebootDevice, then wait for the reported rebootTime", noSub(cmdReboot)},
	{"firmware", nil, "-device ID -version V   invoke firmwareUpdate, then follow properties.reported.firmware", noSub(cmdFirmware)},
	{"invoke", nil, "-device ID -method M [-payload JSON]   a direct method", noSub(cmdInvoke)},
	{"twin", []string{"show", "update"}, "show|update -device ID [-desired JSON] [-tags JSON] [-etag E]", cmdTwin},
	{"device", []string{"create", "show", "delete", "list"}, "create|show|delete -device ID; device list", cmdDevice},
	{"query", nil, `"SELECT * FROM devices WHERE ..."   a twin query`, noSub(cmdQuery)},
	{"job", []string{"reboot", "method", "twin", "show", "cancel", "list"}, `reboot|method|twin -condition "tags.site = 'lab'" ...   schedule a job and follow it; job show|cancel -id ID; job list`, cmdJob},
	{"config", []string{"create", "show", "delete", "list"}, `create -id ID -condition "..." -desired JSON   an automatic device configuration, followed until applied; config show|delete -id ID; config list`, cmdConfig},
	{"dt", []string{"show", "command"}, "show -device ID; dt command -device ID [-component C] -command NAME [-payload JSON]   IoT Plug and Play", cmdDigitalTwin},
	{"monitor", nil, "[-device ID] [-start latest|earliest|TIME] [-count N] [-timeout D]   follow telemetry live through the Event Hubs-compatible endpoint", noSub(cmdMonitor)},
	{"messages", nil, "-device ID [-count N] [-since D]   a device's recent telemetry, through the Event Hubs-compatible endpoint", noSub(cmdMessages)},
	{"version", nil, "  the invoker's version", func(_ context.Context, e *env, _ string, _ []string) error {
		fmt.Fprintln(e.stdout, "invoker", cmdline.Version())
		return nil
	}},
	{"files", nil, "[-count N] [-timeout D] [-download DIR -storage-connection-string S]   follow file upload notifications, as a back end's file notification receiver, downloading each file", noSub(cmdFiles)},
	{"c2d", []string{"send", "purge"}, "send -device ID -body TEXT [-property k=v]   a cloud-to-device message, over AMQP; c2d purge -device ID", cmdC2D},
	{"fault", []string{"add", "list", "clear"}, "add -kind K [-device ID] [-operation OP] [-error-code C] [-count N] [-delay D] [-duration D]; fault list; fault clear [-id ID]   the emulator's faults on demand", cmdFault},
	{"tier", nil, "[-set S1 [-units N] [-window D] [-queue D] | -set off] show or set the tier the emulator emulates", noSub(cmdTier)},
}

var errUsage = fmt.Errorf("%w: run invoker help for the commands, and a command with -h for its flags", cmdline.ErrUsage)

// usage writes the commands and the common flags.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: invoker COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  invoker %s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Common flags: -connection-string (IOTHUB_CONNECTION_STRING), -ca-file (IOTHUB_CA_FILE),")
	fmt.Fprintln(w, "-amqp-addr (IOTHUB_AMQP_ADDR), -output text|json (IOTHUB_OUTPUT). Every flag has an IOTHUB_<FLAG> twin.")
	fmt.Fprintln(w, "Run a command with -h for its flags.")
}

// env is what every command gets: its flags, a client and the output.
type env struct {
	flags  *cmdline.Flags
	conn   *string
	caFile *string
	amqp   *string
	output *string
	stdout io.Writer
	svc    *iotservice.Client
	// events is the Event Hubs-compatible connection string, for the
	// commands that read telemetry; with it no service string is needed.
	events *string
}

func newEnv(name string, stdout, stderr io.Writer) *env {
	f := cmdline.NewFlags("invoker "+name, "IOTHUB_")
	f.SetOutput(stderr)
	return &env{
		flags:  f,
		conn:   f.Secret("connection-string", "service connection string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)"),
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
	if *e.conn == "" && e.events != nil && *e.events != "" {
		return nil // the telemetry commands, given the endpoint itself
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
		usage(stderr)
		return cmdline.ErrUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		sub := ""
		if len(c.subs) > 0 && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			sub, rest = rest[0], rest[1:]
		}
		e := newEnv(strings.TrimSpace(name+" "+sub), stdout, stderr)
		return c.run(ctx, e, sub, rest)
	}
	return fmt.Errorf("%w (unknown command %q)", errUsage, name)
}
