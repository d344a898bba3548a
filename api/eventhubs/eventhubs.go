// Package eventhubs is the contract of IoT Hub's built-in Event
// Hubs-compatible endpoint, as the official Event Hubs clients read it
// (next-wave-protocols §1): the addresses of its nodes, the selector
// filters that say where a receiver starts, and the names and types of the
// annotations an event carries. It does no I/O.
package eventhubs

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Names of the filter and of its two descriptors: JavaScript sends the
// numeric one, Python the symbol (next-wave-protocols §1.5).
const (
	SelectorFilter     = "apache.org:selector-filter:string"
	SelectorDescriptor = 0x468C00000004
)

// Message annotations of an event (next-wave-protocols §1.6).
const (
	SequenceNumber    = "x-opt-sequence-number" // long
	Offset            = "x-opt-offset"          // string of digits
	EnqueuedTime      = "x-opt-enqueued-time"   // timestamp
	DeviceID          = "iothub-connection-device-id"
	ModuleID          = "iothub-connection-module-id"
	AuthMethod        = "iothub-connection-auth-method"
	AuthGenerationID  = "iothub-connection-auth-generation-id"
	HubEnqueuedTime   = "iothub-enqueuedtime"
	MessageSource     = "iothub-message-source"
	DataSchema        = "dt-dataschema"
	Subject           = "dt-subject"
	TelemetrySource   = "Telemetry"
	DefaultConsumer   = "$Default"
	ReceiverRuntime   = "com.microsoft:enable-receiver-runtime-metric"
	Epoch             = "com.microsoft:epoch"
	EventHubType      = "com.microsoft:eventhub"
	PartitionType     = "com.microsoft:partition"
	ManagementNode    = "$management"
	ServiceBusWSPath  = "/$servicebus/websocket"
	ManagementReadOp  = "READ"
	ManagementSuccess = 200
)

// The IoT Hub side of the endpoint (next-wave-protocols §1.3): clients
// holding an IoT Hub connection string attach to HubEventsPath on the
// hub's host and are refused with LinkRedirect, whose info names the
// endpoint. LinkStolen detaches a receiver whose partition a receiver of
// a higher epoch took (§1.5).
const (
	HubEventsPath   = "messages/events"
	LinkRedirect    = "amqp:link:redirect"
	LinkStolen      = "amqp:link:stolen"
	DevelopmentPort = 5672
	DevelopmentFlag = "UseDevelopmentEmulator=true"
	DefaultTLSPort  = 5671
)

// Field is what a start position compares.
type Field int

// The fields a selector can compare.
const (
	ByOffset Field = iota
	BySequence
	ByEnqueuedTime
)

// Position is where a receiver starts: after (or at, with Inclusive) the
// event whose field equals Value. Offset "-1" is the start of the stream
// and "@latest" the end (Latest).
type Position struct {
	Field     Field
	Inclusive bool
	Value     int64 // an offset, a sequence number or Unix milliseconds
	Latest    bool
}

var selector = regexp.MustCompile(`^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>)\s*'([^']*)'\s*$`)

// ParseSelector parses the selector expression of a receiver's filter,
// in the only forms the clients send:
//
//	amqp.annotation.x-opt-offset (>|>=) '<offset>'
//	amqp.annotation.x-opt-sequence-number (>|>=) '<int>'
//	amqp.annotation.x-opt-enqueued-time (>|>=) '<unix-ms>'
func ParseSelector(expr string) (Position, error) {
	m := selector.FindStringSubmatch(expr)
	if m == nil {
		return Position{}, fmt.Errorf("eventhubs: unsupported selector %q", expr)
	}
	p := Position{Inclusive: m[2] == ">="}
	switch m[1] {
	case Offset:
		p.Field = ByOffset
		if m[3] == "@latest" {
			p.Latest = true
			return p, nil
		}
	case SequenceNumber:
		p.Field = BySequence
	default:
		p.Field = ByEnqueuedTime
	}
	v, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("eventhubs: the value in %q is not an integer", expr)
	}
	p.Value = v
	return p, nil
}

// String renders p as the selector a client would send.
func (p Position) String() string {
	op := ">"
	if p.Inclusive {
		op = ">="
	}
	name, v := Offset, strconv.FormatInt(p.Value, 10)
	switch {
	case p.Latest:
		v = "@latest"
	case p.Field == BySequence:
		name = SequenceNumber
	case p.Field == ByEnqueuedTime:
		name = EnqueuedTime
	}
	return "amqp.annotation." + name + " " + op + " '" + v + "'"
}

// PartitionAddress is a receiver's source address, without scheme and
// host: {eventHub}/ConsumerGroups/{group}/Partitions/{id}.
type PartitionAddress struct {
	EventHub, ConsumerGroup, Partition string
}

// ParsePartitionAddress reads the segments of a receiver's source
// address (already percent-decoded).
func ParsePartitionAddress(segments []string) (PartitionAddress, bool) {
	if len(segments) != 5 || !strings.EqualFold(segments[1], "ConsumerGroups") || !strings.EqualFold(segments[3], "Partitions") {
		return PartitionAddress{}, false
	}
	return PartitionAddress{EventHub: segments[0], ConsumerGroup: segments[2], Partition: segments[4]}, true
}

// ConnectionString is the Event Hubs-compatible connection string of a
// hub policy: what the portal shows under Built-in endpoints.
func ConnectionString(host string, port int, policy, key, eventHub string) string {
	return connectionString(host, port, DefaultTLSPort, policy, key, eventHub)
}

// DevelopmentConnectionString is the form with UseDevelopmentEmulator=true,
// with which the JavaScript, Go and .NET clients speak plain AMQP, with
// no TLS, by default on port 5672 (next-wave-protocols §1.2).
func DevelopmentConnectionString(host string, port int, policy, key, eventHub string) string {
	return connectionString(host, port, DevelopmentPort, policy, key, eventHub) + ";" + DevelopmentFlag
}

func connectionString(host string, port, defaultPort int, policy, key, eventHub string) string {
	endpoint := "sb://" + host + "/"
	if port != 0 && port != defaultPort {
		endpoint = fmt.Sprintf("sb://%s:%d/", host, port)
	}
	return "Endpoint=" + endpoint + ";SharedAccessKeyName=" + policy + ";SharedAccessKey=" + key + ";EntityPath=" + eventHub
}

// SplitAudience reads the audience of a token an Event Hubs client signed
// (next-wave-protocols §1.1): sb://, amqps:// or, from the Go client on
// plain AMQP, amqp:// then host[:port] and the entity path. ok is false
// for any other audience, such as an IoT Hub token's bare host name.
func SplitAudience(audience string) (host, path string, ok bool) {
	for _, scheme := range []string{"sb://", "amqps://", "amqp://"} {
		if len(audience) > len(scheme) && strings.EqualFold(audience[:len(scheme)], scheme) {
			host, path, _ = strings.Cut(audience[len(scheme):], "/")
			return host, path, host != ""
		}
	}
	return "", "", false
}

// RedirectAddress is the address an amqp:link:redirect names for a
// client that attached to HubEventsPath/rest: the same node on the event
// hub. The port is always written, as the clients' patterns that pick the
// event hub's name out of it require.
func RedirectAddress(host string, port int, eventHub, rest string) string {
	return fmt.Sprintf("amqps://%s:%d/%s/%s", host, port, eventHub, rest)
}

// ParseRedirectAddress reads the event hub's name out of a redirect's
// address, as the official samples do: the first path segment after
// host:port.
func ParseRedirectAddress(address string) (eventHub string, err error) {
	m := redirect.FindStringSubmatch(address)
	if m == nil {
		return "", fmt.Errorf("eventhubs: redirect address %q names no event hub after host:port", address)
	}
	return m[1], nil
}

var redirect = regexp.MustCompile(`^amqps?://[^/]+:\d+/([^/]+)(/|$)`)
