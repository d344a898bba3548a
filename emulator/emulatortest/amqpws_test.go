package emulatortest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/iothub-emulator/iothub-emulator/emulator/emulatortest"
)

// Ensure that the WebSocket path also serves the service clients' AMQP
// (subprotocol AMQPWSB10), and that the emulator still stops while such a
// connection is open.
func TestAMQPOverWebSocket(t *testing.T) {
	e := emulatortest.Start(t)
	d := websocket.Dialer{TLSClientConfig: e.TLSConfig(), Subprotocols: []string{"AMQPWSB10"}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("wss://localhost:"+portOf(e.HTTPSAddr())+"/$iothub/websocket", http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if resp.Header.Get("Sec-Websocket-Protocol") != "AMQPWSB10" {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-Websocket-Protocol"))
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := ws.ReadMessage()
	if err != nil || string(got) != "AMQP\x00\x01\x00\x00" {
		t.Fatalf("protocol header %q, %v", got, err)
	}
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung with an AMQP WebSocket connection open")
	}
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}
