package amqp

import (
	"net/url"
	"strings"

	wire "github.com/iothub-emulator/iothub-emulator/api/amqp"
)

// A Node is an AMQP node a face serves at the addresses of its pattern.
type Node interface {
	// Attach accepts a link the client attached to the node, returning
	// nil, or refuses it with the error the client is given. It may
	// change l.Reply. It must not block.
	Attach(l *Link) *wire.Error
}

// A Receiver is a node clients send messages to.
type Receiver interface {
	Node
	// Receive handles one message and returns its outcome; for an
	// unsettled delivery the engine sends it in a disposition.
	Receive(l *Link, m *wire.Message) wire.DeliveryState
}

// An AsyncReceiver is a Receiver that settles a delivery later: the
// engine reads on while settle is pending. settle is called once, from
// any goroutine, with the outcome; it must not be called from
// ReceiveAsync after blocking on the connection.
type AsyncReceiver interface {
	Receiver
	ReceiveAsync(l *Link, m *wire.Message, settle func(wire.DeliveryState))
}

// A Sender is a node clients receive messages from: Serve runs in its own
// goroutine once the link is attached and returns when l.Context() ends.
type Sender interface {
	Node
	Serve(l *Link)
}

// route is one registered node.
type route struct {
	pattern []string // lower-cased segments; "*" matches any one
	node    Node
}

// Handle registers n for the addresses matching pattern: segments
// separated by '/', "*" matching any one segment, compared
// case-insensitively ("deviceBound" and "devicebound" are one node,
// next-wave-protocols §0), a leading '/' ignored. Register every node
// before serving.
func (s *Server) Handle(pattern string, n Node) {
	p := strings.Split(strings.ToLower(strings.TrimPrefix(pattern, "/")), "/")
	s.routes = append(s.routes, route{pattern: p, node: n})
}

func (s *Server) route(segments []string) Node {
	for _, r := range s.routes {
		if matches(r.pattern, segments) {
			return r.node
		}
	}
	return nil
}

func matches(pattern, segments []string) bool {
	if len(pattern) != len(segments) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != strings.ToLower(segments[i]) {
			return false
		}
	}
	return true
}

// normalise strips an address's amqps://host[:port] or sb://host[:port]
// prefix (C# and Python clients send one) and returns it with its
// segments percent-decoded (C# encodes ids, Node does not).
func normalise(addr string) (string, []string) {
	for _, scheme := range []string{"amqps://", "amqp://", "sb://"} {
		if len(addr) > len(scheme) && strings.EqualFold(addr[:len(scheme)], scheme) {
			rest := addr[len(scheme):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				addr = rest[i:]
			} else {
				addr = ""
			}
			break
		}
	}
	trimmed := strings.TrimPrefix(addr, "/")
	segs := strings.Split(trimmed, "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			segs[i] = d
		}
	}
	return addr, segs
}

// RequestNode is a request/response node such as $cbs or $management: the
// client sends requests on one link and receives the responses on another
// link to the same node in the same session (next-wave-protocols §0).
type RequestNode struct {
	// Handle answers one request; the engine correlates the response.
	Handle func(l *Link, req *wire.Message) *wire.Message
}

// Attach accepts both links of the pair.
func (n *RequestNode) Attach(*Link) *wire.Error { return nil }

// Receive answers a request on the client's response link: the one named
// by reply-to, or else the session's receiving link on the same node. The
// request's message-id comes back as correlation-id with its own type.
func (n *RequestNode) Receive(l *Link, req *wire.Message) wire.DeliveryState {
	resp := n.Handle(l, req)
	if resp.Properties == nil {
		resp.Properties = &wire.Properties{}
	}
	var replyTo string
	if req.Properties != nil {
		resp.Properties.CorrelationID = req.Properties.MessageID
		replyTo = req.Properties.ReplyTo
		resp.Properties.To = replyTo
	}
	if out := l.conn.replyLink(l, replyTo); out != nil {
		out.Offer(resp)
	}
	return &wire.Accepted{}
}

// replyLink finds the link a response to a request on l goes out on.
func (c *conn) replyLink(l *Link, replyTo string) *Link {
	c.mu.Lock()
	defer c.mu.Unlock()
	var any *Link
	for _, out := range l.sess.links {
		if out.clientSends || out.node != l.node || out.ended {
			continue
		}
		if replyTo != "" && (out.Name == replyTo || (out.Attach.Target != nil && out.Attach.Target.Address == replyTo)) {
			return out
		}
		if any == nil {
			any = out
		}
	}
	return any
}

// CBSNode is the claims-based security node (next-wave-protocols §0).
const CBSNode = wire.CBSNode

// putToken checks a token put on $cbs and answers with status-code 200 (an
// AMQP int, as the Node SDKs compare it with ===) or 401. Each accepted
// token adds a claim to the connection.
func (s *Server) putToken(l *Link, req *wire.Message) *wire.Message {
	status, desc := int32(200), "OK"
	token, _ := req.Value.(string)
	switch op := req.AppProperty(wire.CBSOperation); {
	case op != wire.CBSPutToken:
		status, desc = 400, "unsupported operation "+op
	case s.cfg.Authorize == nil:
		status, desc = 401, "Unauthorized"
	default:
		claim, err := s.cfg.Authorize(req.AppProperty(wire.CBSName), req.AppProperty(wire.CBSType), token)
		if err != nil {
			status, desc = 401, "Unauthorized"
			s.log.Info("amqp put-token refused", "remote", l.Remote(), "audience", req.AppProperty(wire.CBSName), "reason", err.Error())
			break
		}
		l.conn.mu.Lock()
		l.conn.claims = append(l.conn.claims, claim)
		l.conn.armExpiryLocked()
		l.conn.mu.Unlock()
	}
	return &wire.Message{ApplicationProperties: map[any]any{wire.CBSStatusCode: status, wire.CBSStatusDescription: desc}}
}
