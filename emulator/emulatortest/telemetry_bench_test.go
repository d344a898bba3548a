package emulatortest_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iotevents"
	"github.com/iothub-emulator/iothub-emulator/api/topic"
	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// Telemetry end to end: 100 devices publish QoS 1 messages, each with up
// to telemetryWindow unacknowledged, and one consumer receives them. The
// emulator acknowledges a message once it is durable in the telemetry
// log, and the consumer is Microsoft's Event Hubs client (azeventhubs)
// reading the four partitions of the built-in endpoint. The reference is
// the same load through Mosquitto over TLS: QoS 1 publishes to one QoS 1
// subscriber, nothing written to disk.
const (
	telemetryDevices = 100
	telemetryWindow  = 8
)

// stamp is a message body: the run it belongs to and when it was sent.
func stamp(run uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, run), uint64(time.Now().UnixNano()))
}

func readStamp(b []byte) (run uint64, sent time.Time, ok bool) {
	if len(b) != 16 {
		return 0, time.Time{}, false
	}
	return binary.BigEndian.Uint64(b), time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))), true
}

// publishQoS1 sends a QoS 1 PUBLISH with packet id id.
func (d *rawDevice) publishQoS1(t string, id uint16, payload []byte) error {
	body := appendString(make([]byte, 0, 4+len(t)+len(payload)), t)
	body = binary.BigEndian.AppendUint16(body, id)
	return d.send(0x32, append(body, payload...))
}

// publisher sends its share of QoS 1 messages, at most telemetryWindow
// unacknowledged.
type publisher struct {
	d     *rawDevice
	topic string
	acks  chan struct{}
}

func newPublisher(d *rawDevice, topic string) *publisher {
	p := &publisher{d: d, topic: topic, acks: make(chan struct{}, telemetryWindow)}
	go func() {
		for {
			typ, _, err := d.next()
			if err != nil {
				close(p.acks)
				return
			}
			if typ == 0x40 { // PUBACK
				p.acks <- struct{}{}
			}
		}
	}()
	return p
}

// send publishes n messages of run and returns once all are acknowledged.
func (p *publisher) send(run uint64, n int) error {
	inFlight := 0
	for i := 0; i < n; i++ {
		if inFlight == telemetryWindow {
			if _, ok := <-p.acks; !ok {
				return fmt.Errorf("%s: connection closed", p.topic)
			}
			inFlight--
		}
		if err := p.d.publishQoS1(p.topic, uint16(i%60000+1), stamp(run)); err != nil {
			return err
		}
		inFlight++
	}
	for ; inFlight > 0; inFlight-- {
		if _, ok := <-p.acks; !ok {
			return fmt.Errorf("%s: connection closed", p.topic)
		}
	}
	return nil
}

// receipts gathers what the consumer received of one run.
type receipts struct {
	mu   sync.Mutex
	run  uint64
	want int
	lat  []time.Duration
	done chan struct{}
}

func (r *receipts) reset(run uint64, want int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.run, r.want, r.lat, r.done = run, want, make([]time.Duration, 0, want), make(chan struct{})
}

func (r *receipts) add(body []byte) {
	run, sent, ok := readStamp(body)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok || run != r.run || len(r.lat) == r.want {
		return
	}
	if r.lat = append(r.lat, now.Sub(sent)); len(r.lat) == r.want {
		close(r.done)
	}
}

// runTelemetry sends b.N messages from the publishers of run and waits
// for the consumer to receive them all, reporting messages/s end to end,
// acknowledged messages/s, latency and CPU.
func runTelemetry(b *testing.B, pubs []*publisher, rec *receipts) {
	run := randomRun()
	rec.reset(run, b.N)
	cpu := startCPU()
	b.ResetTimer()
	start := time.Now()
	senders := make([]func(int) error, len(pubs))
	for i, p := range pubs {
		senders[i] = func(n int) error { return p.send(run, n) }
	}
	if err := spread(b.N, senders); err != nil {
		b.Fatal(err)
	}
	acked := time.Since(start)
	select {
	case <-rec.done:
	case <-time.After(time.Minute):
		b.Fatalf("the consumer received %d of %d messages", len(rec.lat), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/acked.Seconds(), "acked-msgs/s")
	reportLatency(b, rec.lat)
}

func randomRun() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

func BenchmarkTelemetry(b *testing.B) {
	// Set up once: the sub-benchmarks run again for each b.N.
	e := emulatortest.Start(b)
	refPubs, refRec := mosquittoLoad(b, e)
	var pubs []*publisher
	for i := range telemetryDevices {
		id := fmt.Sprintf("tel-%d", i)
		pubs = append(pubs, newPublisher(dialRawDevice(b, e, id), topic.Event(id, "", nil).String()))
	}
	eh, _ := e.EventHubConnectionString("service")
	r, err := iotevents.NewReader(context.Background(), eh, iotevents.Options{TLSConfig: e.TLSConfig()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	rec := &receipts{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go r.Read(ctx, iotevents.Start{After: time.Now()}, func(ev iotevents.Event) error {
		rec.add(ev.Body)
		return nil
	})

	b.Run("reference-mosquitto-qos1", func(b *testing.B) {
		if refPubs == nil {
			b.Skip("mosquitto is not installed")
		}
		runTelemetry(b, refPubs, refRec)
	})
	b.Run("durable-telemetry-eventhubs", func(b *testing.B) { runTelemetry(b, pubs, rec) })
}

// mosquittoLoad starts Mosquitto and connects the publishers and the
// subscriber of the reference, or returns nil if it is not installed.
func mosquittoLoad(b *testing.B, e *emulatortest.Env) ([]*publisher, *receipts) {
	addr := startMosquitto(b, e)
	if addr == "" {
		return nil, nil
	}
	dial := func(id string) *rawDevice {
		conn, err := tls.Dial("tcp", addr, e.TLSConfig())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return connectRaw(b, conn, id, "", "")
	}
	var pubs []*publisher
	for i := range telemetryDevices {
		pubs = append(pubs, newPublisher(dial(fmt.Sprintf("pub-%d", i)), fmt.Sprintf("bench/%d", i)))
	}
	sub := dial("consumer")
	sub.subscribe(b, 1, "bench/#")
	rec := &receipts{done: make(chan struct{})}
	go func() {
		for {
			typ, body, err := sub.next()
			if err != nil {
				return
			}
			if typ&0xF0 != 0x30 || len(body) < 4 {
				continue
			}
			n := int(binary.BigEndian.Uint16(body))
			id := append([]byte(nil), body[2+n:4+n]...)
			rec.add(body[4+n:])
			if sub.send(0x40, id) != nil {
				return
			}
		}
	}()
	return pubs, rec
}

// startMosquitto runs Mosquitto with the emulator's server certificate
// on a free loopback port, or returns "" if it is not installed
// (.ci/bench installs it).
func startMosquitto(b *testing.B, e *emulatortest.Env) string {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return ""
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := b.TempDir()
	data := filepath.Dir(e.CAPath())
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\ncertfile %s\nkeyfile %s\npersistence false\n"+
		"max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\nuser root\n",
		port, filepath.Join(data, "server.pem"), filepath.Join(data, "server-key.pem"))
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "mosquitto.conf"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b.Fatalf("mosquitto did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
