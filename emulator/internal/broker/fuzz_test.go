package broker

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hubtest"
)

// connectBytes encodes a CONNECT for the fuzz seeds.
func connectBytes(version byte, id, user, pass string, will bool, willQos byte) []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30, Clean: true,
			UsernameFlag: user != "", Username: []byte(user), PasswordFlag: pass != "", Password: []byte(pass)}}
	if will {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload, pk.Connect.WillQos = true, "devices/"+id+"/messages/events/", []byte("w"), willQos
	}
	var b bytes.Buffer
	_ = pk.ConnectEncode(&b)
	return b.Bytes()
}

// FuzzFirstBytes feeds an MQTT connection arbitrary first bytes, CONNECT
// packets of every shape among them: whatever they hold, the connection
// ends without a panic (a panic fails the fuzz) and leaves nothing
// counted as pending.
func FuzzFirstBytes(f *testing.F) {
	log := slog.New(slog.DiscardHandler)
	h := hubtest.New(f, hub.Options{})
	b, err := New(h, Config{Logger: log, ConnectTimeout: 200 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	if err := b.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	user := "localhost/d1/?api-version=2021-04-12"
	f.Add(connectBytes(4, "d1", user, "SharedAccessSignature sr=localhost%2Fdevices%2Fd1&sig=x&se=1", false, 0))
	f.Add(connectBytes(4, "d1", user, "", true, 2))
	f.Add(connectBytes(4, "", "", "", false, 0))
	f.Add(connectBytes(5, "d1", user, "x", false, 0))
	f.Add(connectBytes(3, "d1", user, "x", false, 0))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x30, 0x05, 0x00, 0x01, 'a', 'b', 'c'})
	f.Add([]byte{0xc0, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		hubtest.Feed(t, b.ServeConn, data, 100*time.Millisecond)
		if n := b.pending.Load(); n != 0 {
			t.Fatalf("%d connections still counted as pending", n)
		}
	})
}

// flakyListener fails its first Accepts as a process out of file
// descriptors does, then accepts.
type flakyListener struct {
	net.Listener
	failures int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures > 0 {
		l.failures--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// Ensure that accept errors such as "too many open files" do not end the
// listener: after them, a connection is still served.
func TestAcceptErrorsPass(t *testing.T) {
	b, err := New(hubtest.New(t, hub.Options{}), Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.Serve(&flakyListener{Listener: ln, failures: 5})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A CONNECT of MQTT 3.1 is answered (refused, return code 1): the
	// listener went on accepting and served it.
	if _, err := c.Write(connectBytes(3, "d1", "u", "p", false, 0)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0x01 {
		t.Fatalf("CONNACK %x, %v", ack, err)
	}
}
