package amqp

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/eventhubs"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
)

// EventHubsConfig configures the built-in Event Hubs-compatible endpoint.
type EventHubsConfig struct {
	// Name is the Event Hub-compatible name. Required.
	Name string
	// ConsumerGroups are the groups besides $Default, which always exists.
	ConsumerGroups []string
	// Host and Port are where the endpoint is reached, named in the
	// amqp:link:redirect answer to clients that come with an IoT Hub
	// connection string. Zero Port means 5671.
	Host string
	Port int
}

// ServeEventHubs registers the nodes of the hub's built-in Event
// Hubs-compatible endpoint (next-wave-protocols §1): $management READ of
// the event hub and its partitions, one receiver node per partition and
// consumer group, and the event hub itself, which refuses senders: the
// built-in endpoint is read-only.
func ServeEventHubs(s *Server, h *hub.Hub, cfg EventHubsConfig) {
	eh := &eventHubs{hub: h, cfg: cfg, log: s.log, now: s.cfg.Now, owners: map[string][]*receiver{}}
	s.Handle(eventhubs.ManagementNode, &RequestNode{Handle: eh.management})
	s.Handle(cfg.Name+"/ConsumerGroups/*/Partitions/*", eh)
	s.Handle(cfg.Name, readOnly{})
	s.Handle(cfg.Name+"/Partitions/*", readOnly{})
	// An IoT Hub connection string leads clients to messages/events on the
	// hub's own host, which sends them on to the endpoint (§1.3).
	redirect := redirectNode{cfg: cfg}
	s.Handle(eventhubs.HubEventsPath+"/"+eventhubs.ManagementNode, redirect)
	s.Handle(eventhubs.HubEventsPath+"/ConsumerGroups/*/Partitions/*", redirect)
}

// EventHubsAuthorizer accepts, besides the hub's service tokens, tokens
// signed as the Event Hubs clients sign them.
func EventHubsAuthorizer(h *hub.Hub) func(audience, tokenType, token string) (Claim, error) {
	service := ServiceAuthorizer(h)
	return func(audience, tokenType, token string) (Claim, error) {
		// Event Hubs clients scope their tokens to sb:// or amqp(s)://
		// audiences; IoT Hub's service SDKs to the bare host.
		tok, err := sas.Parse(token)
		if err != nil {
			return service(audience, tokenType, token)
		}
		if aud, _ := tok.Audience(); !isEventHubs(aud) {
			return service(audience, tokenType, token)
		}
		exp, err := h.AuthorizeEventHubs(token)
		if err != nil {
			return Claim{}, err
		}
		return Claim{Audience: audience, Subject: "eventhubs", Rights: uint64(hub.ServiceConnect), Expiry: exp}, nil
	}
}

func isEventHubs(audience string) bool {
	_, _, ok := eventhubs.SplitAudience(audience)
	return ok
}

type eventHubs struct {
	hub *hub.Hub
	cfg EventHubsConfig
	log *slog.Logger
	now func() time.Time
	// starts holds each attached receiver's start, resolved once at its
	// attach (so @latest means the end when the link was accepted) until
	// Serve takes it.
	starts sync.Map // *Link → int64

	// mu guards owners: the receivers of each consumer group's partition,
	// keyed by partitionKey, for the epoch rules. It is never held while
	// calling into the engine except Link.Detach, which only queues.
	mu     sync.Mutex
	owners map[string][]*receiver
}

// receiver is an attached partition receiver and its epoch (owner
// level), if it gave one.
type receiver struct {
	link     *Link
	epoch    int64
	hasEpoch bool
}

func status(code int32, desc string) map[any]any {
	return map[any]any{"status-code": code, "status-description": desc}
}

// management answers READ com.microsoft:eventhub and
// com.microsoft:partition with maps of string keys and the types the
// clients cast to (next-wave-protocols §1.4). security_token is not
// checked: the claims on $cbs authorise.
func (e *eventHubs) management(l *Link, req *wire.Message) *wire.Message {
	fail := func(code int32, cond, desc string) *wire.Message {
		props := status(code, desc)
		props["error-condition"] = wire.Symbol(cond)
		return &wire.Message{ApplicationProperties: props}
	}
	if !l.Authorized(serviceConnect) {
		return fail(401, "amqp:unauthorized-access", "Unauthorized access. 'Listen' claim(s) are required to perform this operation.")
	}
	if op := req.AppProperty("operation"); op != eventhubs.ManagementReadOp {
		return fail(400, "amqp:not-implemented", fmt.Sprintf("operation %q is not supported", op))
	}
	if name := req.AppProperty("name"); !strings.EqualFold(name, e.cfg.Name) {
		return fail(404, "amqp:not-found", fmt.Sprintf("the messaging entity '%s' could not be found", name))
	}
	var body map[any]any
	switch typ := req.AppProperty("type"); typ {
	case eventhubs.EventHubType:
		ids := make([]string, e.hub.Partitions())
		for i := range ids {
			ids[i] = strconv.Itoa(i)
		}
		body = map[any]any{"name": e.cfg.Name, "created_at": e.hub.EventsCreated(), "partition_count": int32(len(ids)),
			"partition_ids": ids, "type": eventhubs.EventHubType, "georeplication_factor": int32(1)}
	case eventhubs.PartitionType:
		p, ok := e.partition(req.AppProperty("partition"))
		if !ok {
			return fail(404, "amqp:not-found", fmt.Sprintf("partition %q does not exist", req.AppProperty("partition")))
		}
		info, err := e.hub.Partition(p)
		if err != nil {
			return fail(500, "amqp:internal-error", err.Error())
		}
		body = map[any]any{"name": e.cfg.Name, "partition": strconv.Itoa(p), "type": eventhubs.PartitionType,
			"begin_sequence_number": info.Begin, "last_enqueued_sequence_number": info.Last,
			"last_enqueued_offset": strconv.FormatInt(info.Last, 10), "last_enqueued_time_utc": lastTime(info),
			"is_partition_empty": info.Empty()}
	default:
		return fail(400, "amqp:not-implemented", fmt.Sprintf("type %q is not supported", typ))
	}
	return &wire.Message{ApplicationProperties: status(200, "OK"), Value: body, HasValue: true}
}

// lastTime is never null: Go's client fails on a nil, so an empty
// partition answers the epoch.
func lastTime(info hub.PartitionInfo) time.Time {
	if info.Empty() || info.LastTime.IsZero() {
		return time.UnixMilli(0).UTC()
	}
	return info.LastTime
}

func (e *eventHubs) partition(id string) (int, bool) {
	p, err := strconv.Atoi(id)
	if err != nil || p < 0 || p >= e.hub.Partitions() || strconv.Itoa(p) != id {
		return 0, false
	}
	return p, true
}

func (e *eventHubs) consumerGroup(name string) bool {
	if strings.EqualFold(name, eventhubs.DefaultConsumer) {
		return true
	}
	for _, g := range e.cfg.ConsumerGroups {
		if strings.EqualFold(g, name) {
			return true
		}
	}
	return false
}

// start reads where a receiver starts: its selector filter, in either
// descriptor form, or the start of the stream.
func (e *eventHubs) start(l *Link, p int) (int64, *wire.Error) {
	info, err := e.hub.Partition(p)
	if err != nil {
		return 0, wire.Errorf("amqp:internal-error", "%v", err)
	}
	src := l.Attach.Source
	if src == nil || src.Filter == nil {
		return info.Begin, nil
	}
	d, ok := src.Filter[wire.Symbol(eventhubs.SelectorFilter)].(*wire.Described)
	if !ok {
		return info.Begin, nil
	}
	expr, _ := d.Value.(string)
	pos, err := eventhubs.ParseSelector(expr)
	if err != nil {
		return 0, wire.Errorf("amqp:invalid-field", "%v", err)
	}
	switch {
	case pos.Latest:
		return info.Last + 1, nil
	case pos.Field == eventhubs.ByEnqueuedTime:
		seq, err := e.hub.FirstAfter(p, time.UnixMilli(pos.Value), pos.Inclusive)
		if err != nil {
			return 0, wire.Errorf("amqp:internal-error", "%v", err)
		}
		return seq, nil
	case pos.Field == eventhubs.ByOffset && pos.Value < 0:
		return info.Begin, nil
	case pos.Inclusive:
		return pos.Value, nil // offsets are sequence numbers
	}
	return pos.Value + 1, nil
}

// Attach accepts a partition receiver that holds a claim, names a
// consumer group and partition that exist and a selector it understands.
func (e *eventHubs) Attach(l *Link) *wire.Error {
	if !l.Require(serviceConnect) {
		return wire.Errorf("amqp:unauthorized-access", "Unauthorized access. 'Listen' claim(s) are required to perform this operation.")
	}
	a, _ := eventhubs.ParsePartitionAddress(l.Segments)
	if !e.consumerGroup(a.ConsumerGroup) {
		return wire.Errorf("amqp:not-found", "the consumer group '%s' does not exist", a.ConsumerGroup)
	}
	p, ok := e.partition(a.Partition)
	if !ok {
		return wire.Errorf("amqp:not-found", "partition '%s' does not exist", a.Partition)
	}
	seq, err := e.start(l, p)
	if err != nil {
		return err
	}
	if err := e.own(partitionKey(a.ConsumerGroup, p), l); err != nil {
		return err
	}
	e.starts.Store(l, seq)
	// The real endpoint sends pre-settled: say so unless the client chose.
	if l.Reply.SndSettleMode == nil {
		settled := wire.SndSettled
		l.Reply.SndSettleMode = &settled
	}
	l.Reply.MaxMessageSize = 1 << 20
	return nil
}

// Serve sends the partition's events from the start position on, as the
// client's credit allows, and waits for new ones at the end.
func (e *eventHubs) Serve(l *Link) {
	a, _ := eventhubs.ParsePartitionAddress(l.Segments)
	p, _ := e.partition(a.Partition)
	defer e.disown(partitionKey(a.ConsumerGroup, p), l)
	v, _ := e.starts.LoadAndDelete(l)
	seq := v.(int64)
	metrics := false
	for _, c := range l.Attach.DesiredCapabilities {
		metrics = metrics || c == eventhubs.ReceiverRuntime
	}
	ctx := l.Context()
	for {
		if err := l.WaitCredit(ctx); err != nil {
			return
		}
		evs, err := e.hub.Events(ctx, p, seq, 64)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("reading the telemetry log failed", "partition", p, "error", err)
				l.Detach(wire.Errorf("amqp:internal-error", "%v", err))
			}
			return
		}
		for _, ev := range evs {
			m := eventMessage(ev)
			if metrics {
				e.addMetrics(m, p)
			}
			if err := l.Send(ctx, m); err != nil {
				return
			}
			seq = ev.Sequence + 1
		}
	}
}

func (e *eventHubs) addMetrics(m *wire.Message, p int) {
	info, err := e.hub.Partition(p)
	if err != nil {
		return
	}
	m.DeliveryAnnotations = map[any]any{
		wire.Symbol("last_enqueued_sequence_number"):   info.Last,
		wire.Symbol("last_enqueued_offset"):            strconv.FormatInt(info.Last, 10),
		wire.Symbol("last_enqueued_time_utc"):          lastTime(info),
		wire.Symbol("runtime_info_retrieval_time_utc"): e.now().UTC(),
	}
}

func partitionKey(group string, p int) string {
	return strings.ToLower(group) + "/" + strconv.Itoa(p)
}

// own applies the epoch rules of Event Hubs to a new receiver of a
// consumer group's partition (next-wave-protocols §1.5): a receiver with
// an epoch at least as high as every other takes the partition, and the
// others are detached with amqp:link:stolen; a lower epoch, or none while
// an epoch receiver holds the partition, is refused.
func (e *eventHubs) own(key string, l *Link) *wire.Error {
	r := &receiver{link: l}
	r.epoch, r.hasEpoch = l.Attach.Properties[wire.Symbol(eventhubs.Epoch)].(int64)
	e.mu.Lock()
	defer e.mu.Unlock()
	current := e.owners[key]
	for _, o := range current {
		switch {
		case o.hasEpoch && !r.hasEpoch:
			return wire.Errorf(eventhubs.LinkStolen, "At least one receiver for the endpoint is created with epoch of '%d', and so non-epoch receiver is not allowed. Either reconnect with a higher epoch, or make sure all epoch receivers are closed or disconnected.", o.epoch)
		case o.hasEpoch && o.epoch > r.epoch:
			return wire.Errorf(eventhubs.LinkStolen, "Receiver '%s' with epoch '%d' cannot be created because a receiver with a higher epoch of '%d' already exists.", l.Name, r.epoch, o.epoch)
		}
	}
	if !r.hasEpoch {
		e.owners[key] = append(current, r)
		return nil
	}
	for _, o := range current {
		o.link.Detach(wire.Errorf(eventhubs.LinkStolen, "New receiver '%s' with higher epoch of '%d' is created hence current receiver '%s' with epoch '%d' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used.", l.Name, r.epoch, o.link.Name, o.epoch))
	}
	e.owners[key] = []*receiver{r}
	return nil
}

// disown forgets a receiver whose link ended.
func (e *eventHubs) disown(key string, l *Link) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := e.owners[key]
	for i, r := range rs {
		if r.link == l {
			rs = append(rs[:i:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(e.owners, key)
		return
	}
	e.owners[key] = rs
}

// redirectNode answers a receiver that came to messages/events with an
// IoT Hub connection string as IoT Hub does: it refuses the link with
// amqp:link:redirect naming the Event Hubs-compatible endpoint's host,
// port and address, from which the client learns the endpoint's name.
type redirectNode struct{ cfg EventHubsConfig }

func (r redirectNode) Attach(l *Link) *wire.Error {
	if !l.Authorized(serviceConnect) {
		return errNoClaim
	}
	port := r.cfg.Port
	if port == 0 {
		port = 5671
	}
	rest := strings.Join(l.Segments[2:], "/")
	return &wire.Error{Condition: eventhubs.LinkRedirect, Description: "The messaging entity is served by the Event Hubs-compatible endpoint.",
		Info: map[any]any{
			wire.Symbol("hostname"):     r.cfg.Host,
			wire.Symbol("network-host"): r.cfg.Host,
			wire.Symbol("port"):         int32(port),
			wire.Symbol("address"):      eventhubs.RedirectAddress(r.cfg.Host, port, r.cfg.Name, rest),
		}}
}

// authMethods holds the iothub-connection-auth-method annotations by
// scope and type: a handful of strings, encoded once.
var authMethods sync.Map // [2]string → string

func authMethod(module bool, typ string) string {
	scope := "device"
	if module {
		scope = "module"
	}
	key := [2]string{scope, typ}
	if v, ok := authMethods.Load(key); ok {
		return v.(string)
	}
	b, _ := json.Marshal(map[string]any{"scope": scope, "type": typ, "issuer": "iothub", "acceptingIpFilterRule": nil})
	authMethods.Store(key, string(b))
	return string(b)
}

// eventMessage renders an event as the endpoint delivers it: annotations
// with their AMQP types, the system properties in the properties section,
// the rest as application properties, the body as one data section
// (next-wave-protocols §1.6).
func eventMessage(ev hub.Event) *wire.Message {
	ann := map[any]any{
		wire.Symbol(eventhubs.SequenceNumber):   ev.Sequence,
		wire.Symbol(eventhubs.Offset):           strconv.FormatInt(ev.Sequence, 10),
		wire.Symbol(eventhubs.EnqueuedTime):     ev.Enqueued,
		wire.Symbol(eventhubs.DeviceID):         ev.DeviceID,
		wire.Symbol(eventhubs.AuthMethod):       authMethod(ev.ModuleID != "", ev.AuthType),
		wire.Symbol(eventhubs.AuthGenerationID): ev.GenerationID,
		wire.Symbol(eventhubs.HubEnqueuedTime):  ev.Enqueued,
		wire.Symbol(eventhubs.MessageSource):    eventhubs.TelemetrySource,
	}
	if ev.ModuleID != "" {
		ann[wire.Symbol(eventhubs.ModuleID)] = ev.ModuleID
	}
	if ev.ModelID != "" {
		ann[wire.Symbol(eventhubs.DataSchema)] = ev.ModelID
	}
	props := &wire.Properties{}
	app := map[any]any{}
	for k, v := range ev.Properties {
		switch k {
		case topic.MessageID:
			props.MessageID = v
		case topic.CorrelationID:
			props.CorrelationID = v
		case topic.UserID:
			props.UserID = []byte(v)
		case topic.ContentType:
			props.ContentType = wire.Symbol(v)
		case topic.ContentEncoding:
			props.ContentEncoding = wire.Symbol(v)
		case "$.ctime":
			app["iothub-creation-time-utc"] = v
		case "$.schema":
			app["iothub-message-schema"] = v
		case "$.sub":
			ann[wire.Symbol(eventhubs.Subject)] = v
		default:
			if !strings.HasPrefix(k, "$.") {
				app[k] = v
			}
		}
	}
	body := ev.Body
	if body == nil {
		body = []byte{}
	}
	return &wire.Message{MessageAnnotations: ann, Properties: props, ApplicationProperties: app, Data: [][]byte{body}}
}

// readOnly refuses senders to the event hub as IoT Hub does: the built-in
// endpoint takes no events (next-wave-protocols §1.9).
type readOnly struct{}

func (readOnly) Attach(l *Link) *wire.Error {
	return wire.Errorf("amqp:unauthorized-access", "Unauthorized access. 'Send' claim(s) are required to perform this operation. Resource: 'sb://%s'.", l.Address)
}

func (readOnly) Receive(*Link, *wire.Message) wire.DeliveryState { return &wire.Released{} }
