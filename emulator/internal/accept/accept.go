// Package accept is the accept loop the emulator's own listeners (MQTT
// and AMQP) share: an accept that fails for a while ("too many open
// files" and its kin) is retried with backoff, as net/http does, so the
// listener never stops until it is closed.
package accept

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// Loop accepts connections on ln and hands each to handle, which must
// not block, until ln is closed. name says which listener, in the logs.
func Loop(ln net.Listener, log *slog.Logger, name string, handle func(net.Conn)) {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warn(name+" accept failed", "error", err, "retry", backoff.String())
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		handle(c)
	}
}
