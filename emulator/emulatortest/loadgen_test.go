package emulatortest_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// The load generators below are the lean clients of the benchmarks: one
// TLS connection each, requests encoded once, answers parsed no further
// than needed. On a two-core machine the clients share the CPU with the
// hub, so general-purpose clients (net/http, Paho) would measure
// themselves as much as the hub. The benchmarks also run with the
// project's own clients, for comparison.

// rawCaller invokes one direct method over HTTP/1.1 on its own connection.
type rawCaller struct {
	conn *tls.Conn
	r    *bufio.Reader
	req  []byte
}

// dialSigned signs an hour-long token for resource with key and dials addr
// over TLS; the connection closes at cleanup.
func dialSigned(tb testing.TB, e *emulatortest.Env, addr, resource, keyName, key string) (*tls.Conn, string) {
	tb.Helper()
	tok, err := sas.New(resource, keyName, key, time.Now().Add(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := tls.Dial("tcp", addr, e.TLSConfig())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn, tok.String()
}

func newRawCaller(tb testing.TB, e *emulatortest.Env, deviceID, method string) *rawCaller {
	tb.Helper()
	cs := e.ServiceString()
	conn, tok := dialSigned(tb, e, e.HTTPSAddr(), cs.HostName, cs.SharedAccessKeyName, cs.SharedAccessKey)
	body := `{"methodName":"` + method + `","payload":{"n":1},"responseTimeoutInSeconds":30}`
	req := "POST /twins/" + deviceID + "/methods?api-version=" + iothub.APIVersion + " HTTP/1.1\r\n" +
		"Host: " + cs.HostName + "\r\nAuthorization: " + tok + "\r\n" +
		"Content-Type: application/json; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	return &rawCaller{conn: conn, r: bufio.NewReader(conn), req: []byte(req)}
}

// call sends the request and reads the answer, which must be a 200.
func (c *rawCaller) call() error {
	if _, err := c.conn.Write(c.req); err != nil {
		return err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	n := -1
	for {
		line, err = c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if name, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return errors.New("no Content-Length")
	}
	_, err = c.r.Discard(n)
	return err
}

// rawDevice is an MQTT 3.1.1 device on its own TLS connection. Once serve
// runs, it answers methods and hands twin responses to the waiting call.
type rawDevice struct {
	conn *tls.Conn
	r    *bufio.Reader
	rid  uint64           // of the twin call in flight; one at a time
	twin chan topic.Topic // twin responses, for serve

	mu  sync.Mutex
	out []byte // guarded by mu
}

func dialRawDevice(tb testing.TB, e *emulatortest.Env, id string, filters ...string) *rawDevice {
	tb.Helper()
	cs := e.AddDevice(tb, id)
	conn, tok := dialSigned(tb, e, e.MQTTAddr(), sas.DeviceResource(cs.HostName, id, ""), "", cs.SharedAccessKey)
	user := topic.Username{Host: cs.HostName, DeviceID: id, APIVersion: iothub.APIVersion}.String()
	d := connectRaw(tb, conn, id, user, tok)
	if len(filters) > 0 {
		d.subscribe(tb, 0, filters...)
	}
	return d
}

// connectRaw sends CONNECT (MQTT 3.1.1, clean session, the username and
// password if user is set) on conn and reads the CONNACK.
func connectRaw(tb testing.TB, conn *tls.Conn, clientID, user, password string) *rawDevice {
	tb.Helper()
	d := &rawDevice{conn: conn, r: bufio.NewReader(conn), twin: make(chan topic.Topic, 1)}
	var body []byte
	body = appendString(body, "MQTT")
	flags := byte(0x02)
	if user != "" {
		flags |= 0xC0
	}
	body = append(body, 4, flags, 0, 60)
	body = appendString(body, clientID)
	if user != "" {
		body = appendString(appendString(body, user), password)
	}
	d.write(tb, 0x10, body)
	if typ, b := d.read(tb); typ != 0x20 || len(b) != 2 || b[1] != 0 {
		tb.Fatalf("CONNACK %#x %v", typ, b)
	}
	return d
}

// subscribe subscribes to filters at qos and reads the SUBACK.
func (d *rawDevice) subscribe(tb testing.TB, qos byte, filters ...string) {
	tb.Helper()
	body := []byte{0, 1}
	for _, f := range filters {
		body = append(appendString(body, f), qos)
	}
	d.write(tb, 0x82, body)
	if typ, _ := d.read(tb); typ != 0x90 {
		tb.Fatalf("SUBACK %#x", typ)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (d *rawDevice) write(tb testing.TB, typ byte, body []byte) {
	if err := d.send(typ, body); err != nil {
		tb.Fatal(err)
	}
}

func (d *rawDevice) read(tb testing.TB) (byte, []byte) {
	typ, body, err := d.next()
	if err != nil {
		tb.Fatal(err)
	}
	return typ, body
}

// send writes one packet in a single write.
func (d *rawDevice) send(typ byte, body []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.out = append(d.out[:0], typ)
	for n := len(body); ; {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		d.out = append(d.out, b)
		if n == 0 {
			break
		}
	}
	d.out = append(d.out, body...)
	_, err := d.conn.Write(d.out)
	return err
}

// next reads one packet; its body is valid until the next read.
func (d *rawDevice) next() (byte, []byte, error) {
	typ, err := d.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body, err := d.r.Peek(n)
	if err != nil {
		body = make([]byte, n)
		if _, err := io.ReadFull(d.r, body); err != nil {
			return 0, nil, err
		}
		return typ, body, nil
	}
	_, _ = d.r.Discard(n)
	return typ, body, nil
}

// publishQoS0 sends a QoS 0 PUBLISH.
func (d *rawDevice) publishQoS0(t string, payload []byte) error {
	body := appendString(make([]byte, 0, 2+len(t)+len(payload)), t)
	return d.send(0x30, append(body, payload...))
}

// nextPublish reads packets until a PUBLISH and returns its topic and
// payload (QoS 0: no packet id).
func (d *rawDevice) nextPublish() (topic.Topic, []byte, error) {
	for {
		typ, body, err := d.next()
		if err != nil {
			return topic.Topic{}, nil, err
		}
		if typ&0xF0 != 0x30 || len(body) < 2 {
			continue
		}
		n := int(binary.BigEndian.Uint16(body))
		if len(body) < 2+n {
			return topic.Topic{}, nil, errors.New("short PUBLISH")
		}
		t, err := topic.Parse(string(body[2 : 2+n]))
		return t, body[2+n:], err
	}
}

// serve echoes every method request with status 200 and passes twin
// responses on, until the connection closes.
func (d *rawDevice) serve() {
	defer close(d.twin)
	for {
		t, payload, err := d.nextPublish()
		if err != nil {
			return
		}
		switch t.Kind {
		case topic.MethodRequest:
			if err := d.publishQoS0(topic.MethodResult(200, t.RequestID).String(), payload); err != nil {
				return
			}
		case topic.TwinResponse:
			d.twin <- t
		}
	}
}

// twinCall publishes a twin request and waits for its answer's status.
func (d *rawDevice) twinCall(t func(rid string) topic.Topic, payload []byte, status int) error {
	d.rid++
	rid := topic.FormatRID(d.rid)
	if err := d.publishQoS0(t(rid).String(), payload); err != nil {
		return err
	}
	res, ok := <-d.twin
	if !ok {
		return errors.New("connection closed")
	}
	if res.RequestID != rid || res.Status != status {
		return fmt.Errorf("twin answer %+v, want status %d for rid %s", res, status, rid)
	}
	return nil
}

// twinGet asks for the device's twin.
func (d *rawDevice) twinGet() error { return d.twinCall(topic.GetTwin, nil, 200) }

// reportCounter sends a reported patch and waits for its acknowledgement,
// which the hub sends after the write is durable.
func (d *rawDevice) reportCounter(n int) error {
	return d.twinCall(topic.PatchReported, fmt.Appendf(nil, `{"counter":%d,"temperature":21.5}`, n), 204)
}
