package emulatortest_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/amqp"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// Device telemetry on each transport: 100 devices send as fast as the
// hub acknowledges, each acknowledgement following the message's commit
// to the telemetry log. MQTT and AMQP keep telemetryWindow messages in
// flight per device; HTTPS has one request at a time per device, as
// HTTP/1.1 does. The reference is MQTT on the same emulator.

// amqpDevice is a raw AMQP device: $cbs, then a telemetry sender whose
// unsettled transfers the hub settles once stored.
type amqpDevice struct {
	conn *tls.Conn
	r    *bufio.Reader
	acks chan struct{}
	mu   sync.Mutex
	next uint32
	buf  []byte
}

func (d *amqpDevice) frame(p amqp.Performative, payload []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, err := amqp.AppendFrame(d.buf[:0], 0, p, payload)
	if err != nil {
		return err
	}
	d.buf = b
	_, err = d.conn.Write(b)
	return err
}

func (d *amqpDevice) read() (amqp.Performative, []byte, error) {
	for {
		_, _, body, err := amqp.ReadFrame(d.r, 1<<20)
		if err != nil {
			return nil, nil, err
		}
		if len(body) > 0 {
			return amqp.Unmarshal(body)
		}
	}
}

// until reads frames until one of type P.
func until[P amqp.Performative](tb testing.TB, d *amqpDevice) (P, []byte) {
	tb.Helper()
	for {
		p, payload, err := d.read()
		if err != nil {
			tb.Fatal(err)
		}
		if want, ok := p.(P); ok {
			return want, payload
		}
	}
}

func dialAMQPDevice(tb testing.TB, e *emulatortest.Env, id string) *amqpDevice {
	tb.Helper()
	cs := e.AddDevice(tb, id)
	conn, err := tls.Dial("tcp", e.AMQPAddr(), e.TLSConfig())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	d := &amqpDevice{conn: conn, r: bufio.NewReader(conn), acks: make(chan struct{}, telemetryWindow)}
	var h [8]byte
	if _, err := conn.Write(amqp.HeaderAMQP); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(d.r, h[:]); err != nil {
		tb.Fatal(err)
	}
	zero, credit := uint32(0), uint32(10)
	steps := []amqp.Performative{
		&amqp.Open{ContainerID: id, Hostname: "localhost", MaxFrameSize: 1 << 16},
		&amqp.Begin{IncomingWindow: 5000, OutgoingWindow: 5000, HandleMax: 8},
	}
	for _, p := range steps {
		if err := d.frame(p, nil); err != nil {
			tb.Fatal(err)
		}
	}
	until[*amqp.Open](tb, d)
	until[*amqp.Begin](tb, d)
	attach := func(a *amqp.Attach) {
		tb.Helper()
		if err := d.frame(a, nil); err != nil {
			tb.Fatal(err)
		}
		until[*amqp.Attach](tb, d)
	}
	attach(&amqp.Attach{Name: "cbs", Handle: 0, Role: amqp.RoleSender, Source: &amqp.Source{Address: id}, Target: &amqp.Target{Address: amqp.CBSNode}, InitialDeliveryCount: &zero})
	attach(&amqp.Attach{Name: "cbs-reply", Handle: 1, Role: amqp.RoleReceiver, Source: &amqp.Source{Address: amqp.CBSNode}, Target: &amqp.Target{Address: "cbs"}})
	one := uint32(1)
	d.frame(&amqp.Flow{IncomingWindow: 5000, OutgoingWindow: 5000, Handle: &one, DeliveryCount: &zero, LinkCredit: &credit}, nil)
	tok, _ := sas.New(sas.DeviceResource("localhost", id, ""), "", cs.SharedAccessKey, time.Now().Add(time.Hour))
	req, _ := (&amqp.Message{Properties: &amqp.Properties{MessageID: "t", To: amqp.CBSNode, ReplyTo: "cbs"},
		ApplicationProperties: map[any]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": "localhost/devices/" + id},
		Value:                 tok.String(), HasValue: true}).Marshal(nil)
	d.frame(&amqp.Transfer{Handle: 0, DeliveryID: &zero, DeliveryTag: []byte{0}, MessageFormat: &zero}, req)
	until[*amqp.Transfer](tb, d) // the status: a wrong one fails the attach below
	d.next = 1
	attach(&amqp.Attach{Name: "events", Handle: 2, Role: amqp.RoleSender, Source: &amqp.Source{Address: id},
		Target: &amqp.Target{Address: "/devices/" + id + "/messages/events"}, InitialDeliveryCount: &zero})
	go func() {
		for {
			p, _, err := d.read()
			if err != nil {
				close(d.acks)
				return
			}
			if disp, ok := p.(*amqp.Disposition); ok && disp.First >= 1 {
				last := disp.First
				if disp.Last != nil {
					last = *disp.Last
				}
				for range last - disp.First + 1 {
					d.acks <- struct{}{}
				}
			}
		}
	}()
	return d
}

// send sends n messages, at most telemetryWindow unsettled.
func (d *amqpDevice) send(n int) error {
	zero := uint32(0)
	msg, _ := (&amqp.Message{Data: [][]byte{stamp(0)}}).Marshal(nil)
	inFlight := 0
	for range n {
		if inFlight == telemetryWindow {
			if _, ok := <-d.acks; !ok {
				return fmt.Errorf("connection closed")
			}
			inFlight--
		}
		id := d.next
		d.next++
		if err := d.frame(&amqp.Transfer{Handle: 2, DeliveryID: &id, DeliveryTag: []byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)}, MessageFormat: &zero}, msg); err != nil {
			return err
		}
		inFlight++
	}
	for ; inFlight > 0; inFlight-- {
		if _, ok := <-d.acks; !ok {
			return fmt.Errorf("connection closed")
		}
	}
	return nil
}

// httpsDevice posts events on its own connection.
type httpsDevice struct {
	cli   *http.Client
	url   string
	token string
}

func newHTTPSDevice(tb testing.TB, e *emulatortest.Env, id string) *httpsDevice {
	cs := e.AddDevice(tb, id)
	tok, _ := sas.New(sas.DeviceResource("localhost", id, ""), "", cs.SharedAccessKey, time.Now().Add(time.Hour))
	tr := &http.Transport{TLSClientConfig: e.TLSConfig(), MaxIdleConnsPerHost: 1}
	tb.Cleanup(tr.CloseIdleConnections)
	return &httpsDevice{cli: &http.Client{Transport: tr}, url: "https://" + e.HTTPSAddr() + "/devices/" + id + "/messages/events?api-version=" + iothub.APIVersion, token: tok.String()}
}

func (d *httpsDevice) send(n int) error {
	body := stamp(0)
	for range n {
		req, _ := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(body))
		req.Host = "localhost"
		req.Header.Set("Authorization", d.token)
		res, err := d.cli.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent {
			return fmt.Errorf("status %s", res.Status)
		}
	}
	return nil
}

// runSenders splits b.N messages across senders and reports
// acknowledged messages/s and CPU per message.
func runSenders(b *testing.B, senders []func(n int) error) { runSpread(b, senders, "acked-msgs/s") }

// runSpread splits b.N operations across senders and reports their rate
// in unit and the CPU per operation.
func runSpread(b *testing.B, senders []func(n int) error, unit string) {
	cpu := startCPU()
	b.ResetTimer()
	start := time.Now()
	err := spread(b.N, senders)
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	cpu.report(b)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
}

// spread sends n messages split evenly across senders, all at once, and
// returns the first failure.
func spread(n int, senders []func(n int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(senders))
	for i, send := range senders {
		k := n / len(senders)
		if i < n%len(senders) {
			k++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(k); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func BenchmarkDeviceTelemetry(b *testing.B) {
	e := emulatortest.Start(b)
	var mqtt, amqpSenders, https []func(int) error
	for i := range telemetryDevices {
		id := fmt.Sprintf("mq-%d", i)
		p := newPublisher(dialRawDevice(b, e, id), topic.Event(id, "", nil).String())
		mqtt = append(mqtt, func(n int) error { return p.send(0, n) })
		a := dialAMQPDevice(b, e, fmt.Sprintf("am-%d", i))
		amqpSenders = append(amqpSenders, a.send)
		h := newHTTPSDevice(b, e, fmt.Sprintf("ht-%d", i))
		https = append(https, h.send)
	}
	b.Run("reference-mqtt-qos1", func(b *testing.B) { runSenders(b, mqtt) })
	b.Run("amqp", func(b *testing.B) { runSenders(b, amqpSenders) })
	b.Run("https", func(b *testing.B) { runSenders(b, https) })
}
