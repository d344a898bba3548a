// Package iotevents reads a hub's device-to-cloud messages through its
// built-in Event Hubs-compatible endpoint, the way a back end on Azure
// does: with Microsoft's Event Hubs client (azeventhubs), which also makes
// it an interop check of the emulator's endpoint. Endpoint finds that
// endpoint from an IoT Hub connection string as `az iot hub
// monitor-events` and the official samples do, by the hub's
// amqp:link:redirect (next-wave-protocols §1.3), with Microsoft's go-amqp
// (through api/internal/amqplink). Nothing here knows the emulator:
// pointed at Azure, it reads Azure.
//
// This package is the one home of azeventhubs (.ci/deps).
package iotevents

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"

	"github.com/iothub-emulator/iothub-emulator/api/connstr"
	"github.com/iothub-emulator/iothub-emulator/api/eventhubs"
	"github.com/iothub-emulator/iothub-emulator/api/internal/amqplink"
	"github.com/iothub-emulator/iothub-emulator/api/internal/cafile"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
)

// Options configure Endpoint and Reader.
type Options struct {
	// TLSConfig is the TLS configuration of both; nil means the system
	// roots, or those of CAFile.
	TLSConfig *tls.Config
	// CAFile is a PEM file of the CAs to trust instead of the system
	// roots (the emulator's ca.pem), when TLSConfig is nil.
	CAFile string
	// AMQPAddr is the host:port Endpoint dials for the redirect. Zero
	// means the connection string's host on 5671.
	AMQPAddr string
	// ConsumerGroup is the group a Reader reads as. Zero means $Default.
	ConsumerGroup string
}

// Endpoint returns the Event Hubs-compatible connection string of the hub
// cs names. It connects to the hub's AMQP port with SASL PLAIN
// ({policy}@sas.root.{hub} and an IoT Hub SAS token), attaches a receiver
// to messages/events/$management and reads the endpoint's host, port and
// name from the amqp:link:redirect the hub answers with.
func Endpoint(ctx context.Context, cs connstr.Service, opts Options) (string, error) {
	host := cs.HostName
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	addr := opts.AMQPAddr
	if addr == "" {
		addr = net.JoinHostPort(host, strconv.Itoa(eventhubs.DefaultTLSPort))
	}
	tok, err := sas.New(host, cs.SharedAccessKeyName, cs.SharedAccessKey, time.Now().Add(time.Hour))
	if err != nil {
		return "", err
	}
	tlsCfg, err := opts.tlsConfig()
	if err != nil {
		return "", err
	}
	hubName, _, _ := strings.Cut(host, ".")
	conn, err := amqplink.Dial(ctx, amqplink.Config{Addr: addr, HostName: host, TLS: tlsFor(tlsCfg, host),
		PlainUser: cs.SharedAccessKeyName + "@sas.root." + hubName, PlainPassword: tok.String()})
	if err != nil {
		return "", fmt.Errorf("iotevents: connect to %s: %w", addr, err)
	}
	defer conn.Close()
	r, err := conn.NewReceiver(ctx, "amqps://"+host+"/"+eventhubs.HubEventsPath+"/"+eventhubs.ManagementNode, amqplink.LinkOptions{})
	if err == nil {
		r.Close(ctx)
		return "", errors.New("iotevents: the hub accepted the receiver instead of redirecting it")
	}
	// The refusal comes as the attach's error, or as the link's.
	remote := amqplink.RemoteError(err)
	if remote == nil || remote.Condition != eventhubs.LinkRedirect {
		return "", fmt.Errorf("iotevents: the hub did not redirect to its Event Hubs-compatible endpoint: %w", err)
	}
	return redirected(remote.Info, cs)
}

// redirected builds the connection string a redirect's info names.
func redirected(info map[string]any, cs connstr.Service) (string, error) {
	ehHost, _ := info["hostname"].(string)
	address, _ := info["address"].(string)
	name, err := eventhubs.ParseRedirectAddress(address)
	if ehHost == "" || err != nil {
		return "", fmt.Errorf("iotevents: a redirect without a host name or event hub: %v", info)
	}
	port := eventhubs.DefaultTLSPort
	switch p := info["port"].(type) {
	case int32:
		port = int(p)
	case int64:
		port = int(p)
	}
	return eventhubs.ConnectionString(ehHost, port, cs.SharedAccessKeyName, cs.SharedAccessKey, name), nil
}

// tlsConfig is the TLS configuration opts ask for, nil for the system
// roots.
func (opts Options) tlsConfig() (*tls.Config, error) {
	if opts.TLSConfig != nil || opts.CAFile == "" {
		return opts.TLSConfig, nil
	}
	pool, err := cafile.Pool(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("iotevents: %w", err)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func tlsFor(cfg *tls.Config, host string) *tls.Config {
	if cfg == nil {
		return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// An Event is one device-to-cloud message as the endpoint delivers it.
type Event struct {
	Partition  string         `json:"partition"`
	Sequence   int64          `json:"sequenceNumber"`
	Offset     string         `json:"offset"`
	Enqueued   time.Time      `json:"enqueuedTime"`
	DeviceID   string         `json:"deviceId"`
	ModuleID   string         `json:"moduleId,omitempty"`
	MessageID  string         `json:"messageId,omitempty"`
	Content    string         `json:"contentType,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
	// System holds the annotations the hub adds (iothub-*, x-opt-*).
	System map[string]any `json:"systemProperties,omitempty"`
	Body   []byte         `json:"-"`
}

// Start says where a Reader starts in every partition.
type Start struct {
	// Earliest starts at the oldest event kept.
	Earliest bool
	// After starts after events enqueued before this time (it wins over
	// Earliest). Zero, with Earliest false, means only new events.
	After time.Time
	// ToEnd stops each partition at the last event it held when the read
	// began, and Read returns once all have: the backlog, then no more.
	ToEnd bool
}

// Reader reads every partition of an Event Hubs-compatible endpoint.
type Reader struct {
	client     *azeventhubs.ConsumerClient
	partitions []string
}

// NewReader connects to the endpoint of an Event Hubs connection string
// (as Endpoint returns, or as the portal shows).
func NewReader(ctx context.Context, connectionString string, opts Options) (*Reader, error) {
	group := opts.ConsumerGroup
	if group == "" {
		group = azeventhubs.DefaultConsumerGroup
	}
	tlsCfg, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	var copts *azeventhubs.ConsumerClientOptions
	if tlsCfg != nil {
		// The client dials with the configuration as given: it must name
		// the server.
		copts = &azeventhubs.ConsumerClientOptions{TLSConfig: tlsFor(tlsCfg, endpointHost(connectionString))}
	}
	c, err := azeventhubs.NewConsumerClientFromConnectionString(connectionString, "", group, copts)
	if err != nil {
		return nil, fmt.Errorf("iotevents: %w", err)
	}
	props, err := c.GetEventHubProperties(ctx, nil)
	if err != nil {
		c.Close(context.Background())
		return nil, fmt.Errorf("iotevents: read the event hub's partitions: %w", err)
	}
	return &Reader{client: c, partitions: props.PartitionIDs}, nil
}

// endpointHost is the host of a connection string's Endpoint, or "".
func endpointHost(connectionString string) string {
	for _, kv := range strings.Split(connectionString, ";") {
		if k, v, _ := strings.Cut(kv, "="); strings.EqualFold(strings.TrimSpace(k), "Endpoint") {
			if u, err := url.Parse(strings.TrimSpace(v)); err == nil {
				return u.Hostname()
			}
		}
	}
	return ""
}

// Partitions are the endpoint's partition ids.
func (r *Reader) Partitions() []string { return r.partitions }

// Read delivers the events of every partition from start to fn, each
// partition's in order, until ctx ends (it then returns nil), every
// partition is read to its end with start.ToEnd, or fn or the client
// fails. fn is called from one goroutine at a time.
func (r *Reader) Read(ctx context.Context, start Start, fn func(Event) error) error {
	pos := azeventhubs.StartPosition{}
	switch {
	case !start.After.IsZero():
		pos.EnqueuedTime = &start.After
	case start.Earliest:
		pos.Earliest = &start.Earliest
	default:
		latest := true
		pos.Latest = &latest
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu sync.Mutex // serialises fn
		wg sync.WaitGroup
	)
	for _, id := range r.partitions {
		end := int64(-1) // the last sequence number to read, with ToEnd
		if start.ToEnd {
			props, err := r.client.GetPartitionProperties(ctx, id, nil)
			if err != nil {
				cancel(fmt.Errorf("iotevents: partition %s: %w", id, err))
				break
			}
			if props.IsEmpty || (!start.After.IsZero() && !props.LastEnqueuedOn.After(start.After)) {
				continue // nothing to read up to the end
			}
			end = props.LastEnqueuedSequenceNumber
		}
		pc, err := r.client.NewPartitionClient(id, &azeventhubs.PartitionClientOptions{StartPosition: pos})
		if err != nil {
			cancel(err)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close(context.Background())
			for ctx.Err() == nil {
				if start.ToEnd && !start.Earliest && start.After.IsZero() {
					return // only new events, and none wanted
				}
				// One at a time: a call returns as soon as an event is
				// there (the client prefetches the rest), where a larger
				// count would wait for that many.
				evs, err := pc.ReceiveEvents(ctx, 1, nil)
				for _, ev := range evs {
					mu.Lock()
					err := fn(convert(id, ev))
					mu.Unlock()
					if err != nil {
						cancel(err)
						return
					}
					if start.ToEnd && ev.SequenceNumber >= end {
						return
					}
				}
				if err != nil && ctx.Err() == nil {
					cancel(fmt.Errorf("iotevents: partition %s: %w", id, err))
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		<-done
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// Close closes the connection.
func (r *Reader) Close() error { return r.client.Close(context.Background()) }

func convert(partition string, ev *azeventhubs.ReceivedEventData) Event {
	e := Event{Partition: partition, Sequence: ev.SequenceNumber, Offset: ev.Offset, Body: ev.Body,
		Properties: ev.Properties, System: ev.SystemProperties}
	if ev.EnqueuedTime != nil {
		e.Enqueued = *ev.EnqueuedTime
	}
	if ev.MessageID != nil {
		e.MessageID = *ev.MessageID
	}
	if ev.ContentType != nil {
		e.Content = *ev.ContentType
	}
	e.DeviceID, _ = ev.SystemProperties[eventhubs.DeviceID].(string)
	e.ModuleID, _ = ev.SystemProperties[eventhubs.ModuleID].(string)
	return e
}
