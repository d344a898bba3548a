package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/blobstore"
	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/iotevents"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/iotservice"
)

// telemetryFlags registers the flags of the commands that read the
// built-in Event Hubs-compatible endpoint.
func (e *env) telemetryFlags() (group *string) {
	e.events = e.flags.Secret("eventhub-connection-string", "the Event Hubs-compatible endpoint's connection string (default: found from -connection-string, as az iot hub monitor-events does)")
	return e.flags.String("consumer-group", "$Default", "consumer group to read as")
}

// reader connects to the endpoint: the one given, or the one the hub's
// redirect names.
func (e *env) reader(ctx context.Context, group string) (*iotevents.Reader, error) {
	opts := iotevents.Options{CAFile: *e.caFile, AMQPAddr: *e.amqp, ConsumerGroup: group}
	conn := *e.events
	if conn == "" {
		cs, err := connstr.ParseService(*e.conn)
		if err != nil {
			return nil, err
		}
		if conn, err = iotevents.Endpoint(ctx, cs, opts); err != nil {
			return nil, err
		}
	}
	return iotevents.NewReader(ctx, conn, opts)
}

// message is an event as the invoker prints it, close to az iot hub
// monitor-events --properties all.
type message struct {
	Origin      string         `json:"origin"`
	Module      string         `json:"module,omitempty"`
	Enqueued    time.Time      `json:"enqueuedTime"`
	Payload     any            `json:"payload"`
	Application map[string]any `json:"properties,omitempty"`
	System      map[string]any `json:"systemProperties,omitempty"`
}

func toMessage(ev iotevents.Event) message {
	m := message{Origin: ev.DeviceID, Module: ev.ModuleID, Enqueued: ev.Enqueued, Application: ev.Properties}
	var v any
	if json.Unmarshal(ev.Body, &v) == nil {
		m.Payload = v
	} else {
		m.Payload = string(ev.Body)
	}
	m.System = map[string]any{}
	if ev.MessageID != "" {
		m.System["message-id"] = ev.MessageID
	}
	if ev.Content != "" {
		m.System["content-type"] = ev.Content
	}
	return m
}

// line renders an event on one line: time, origin, payload, properties.
func (m message) line() string {
	origin := m.Origin
	if m.Module != "" {
		origin += "/" + m.Module
	}
	payload, _ := json.Marshal(m.Payload)
	var props []string
	for k, v := range m.Application {
		props = append(props, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(props)
	return strings.TrimRight(fmt.Sprintf("%s %s %s %s", m.Enqueued.UTC().Format(time.RFC3339Nano), origin, payload, strings.Join(props, " ")), " ")
}

// cmdMonitor follows telemetry as az iot hub monitor-events does: every
// device's, or one's, printed as it arrives, one line (or one JSON
// object) per message.
func cmdMonitor(ctx context.Context, e *env, args []string) error {
	id := e.flags.String("device", "", "only this device's messages (default: every device's)")
	from := e.flags.String("start", "latest", "latest (only new messages), earliest (all kept), or an RFC 3339 time")
	timeout := e.flags.Duration("timeout", 0, "stop after this long (0: until interrupted)")
	count := e.flags.Int("count", 0, "stop after this many messages (0: no limit)")
	group := e.telemetryFlags()
	if err := e.parse(args); err != nil {
		return err
	}
	start := iotevents.Start{}
	switch *from {
	case "latest":
	case "earliest":
		start.Earliest = true
	default:
		t, err := time.Parse(time.RFC3339Nano, *from)
		if err != nil {
			return fmt.Errorf("%w: -start must be latest, earliest or an RFC 3339 time", errUsage)
		}
		start.After = t
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	r, err := e.reader(ctx, *group)
	if err != nil {
		return err
	}
	defer r.Close()
	enc := json.NewEncoder(e.stdout)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	printed := 0
	return r.Read(ctx, start, func(ev iotevents.Event) error {
		if *id != "" && ev.DeviceID != *id {
			return nil
		}
		m := toMessage(ev)
		var err error
		if *e.output == "json" {
			err = enc.Encode(m)
		} else {
			_, err = fmt.Fprintln(e.stdout, m.line())
		}
		if printed++; *count > 0 && printed >= *count {
			stop()
		}
		return err
	})
}

// cmdMessages prints a device's recent telemetry: what the endpoint
// holds from -since ago to now, at most -count messages, oldest first.
func cmdMessages(ctx context.Context, e *env, args []string) error {
	id := e.flags.String("device", "", "device id")
	count := e.flags.Int("count", 100, "most messages to print")
	since := e.flags.Duration("since", time.Hour, "how far back to look")
	group := e.telemetryFlags()
	if err := e.parse(args); err != nil {
		return err
	}
	if err := requireDevice(*id); err != nil {
		return err
	}
	r, err := e.reader(ctx, *group)
	if err != nil {
		return err
	}
	defer r.Close()
	var msgs []message
	err = r.Read(ctx, iotevents.Start{After: time.Now().Add(-*since), ToEnd: true}, func(ev iotevents.Event) error {
		if ev.DeviceID == *id {
			msgs = append(msgs, toMessage(ev))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Partitions are read side by side: order by time, keep the newest.
	sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].Enqueued.Before(msgs[j].Enqueued) })
	if len(msgs) > *count {
		msgs = msgs[len(msgs)-*count:]
	}
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.line() + "\n")
	}
	if msgs == nil {
		msgs = []message{}
	}
	e.print(msgs, b.String())
	return nil
}

// cmdFiles follows file upload notifications, as a back end's file
// notification receiver does: one line (or JSON object) per uploaded
// file, until -count, -timeout or an interrupt.
func cmdFiles(ctx context.Context, e *env, args []string) error {
	count := e.flags.Int("count", 0, "stop after this many notifications (0: no limit)")
	timeout := e.flags.Duration("timeout", 0, "stop after this long (0: until interrupted)")
	dir := e.flags.String("download", "", "download each uploaded file into this directory, as {deviceId}/{name} (needs -storage-connection-string)")
	storageCS := e.flags.Secret("storage-connection-string", "the storage account of the hub's file uploads, to download from (UseDevelopmentStorage=true: Azurite)")
	containerName := e.flags.String("storage-container", "fileuploads", "the container of the hub's file uploads")
	if err := e.parse(args); err != nil {
		return err
	}
	var store *blobstore.Store
	if *dir != "" {
		if *storageCS == "" {
			return fmt.Errorf("%w: -download needs -storage-connection-string", cmdline.ErrUsage)
		}
		cs, err := connstr.ParseStorage(*storageCS)
		if err != nil {
			return err
		}
		var caPEM []byte
		if *e.caFile != "" {
			if caPEM, err = os.ReadFile(*e.caFile); err != nil {
				return err
			}
		}
		if store, err = blobstore.New(cs, *containerName, caPEM, nil); err != nil {
			return err
		}
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	enc := json.NewEncoder(e.stdout)
	seen := 0
	return e.svc.ReceiveFileNotifications(ctx, func(n iothub.FileNotification) error {
		var (
			path string
			err  error
		)
		if store != nil {
			// The notification is completed once the file is on disk.
			if path, err = download(ctx, store, *dir, n.BlobName); err != nil {
				return err
			}
		}
		if *e.output == "json" {
			err = enc.Encode(struct {
				iothub.FileNotification
				Path string `json:"downloadedTo,omitempty"`
			}{n, path})
		} else {
			line := fmt.Sprintf("%s %s %s %d bytes %s", n.EnqueuedTimeUTC.UTC().Format(time.RFC3339Nano), n.DeviceID, n.BlobName, n.BlobSizeInBytes, n.BlobURI)
			if path != "" {
				line += " -> " + path
			}
			_, err = fmt.Fprintln(e.stdout, line)
		}
		if err != nil {
			return err
		}
		if seen++; *count > 0 && seen >= *count {
			return iotservice.ErrStop
		}
		return nil
	})
}

// download writes the blob to dir/{blob name}, refusing a name that
// would leave dir, and returns the file's path.
func download(ctx context.Context, store *blobstore.Store, dir, blob string) (string, error) {
	rel := filepath.FromSlash(blob)
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("the blob name %q does not name a file under %s", blob, dir)
	}
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".download-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := store.Download(ctx, blob, tmp); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}
