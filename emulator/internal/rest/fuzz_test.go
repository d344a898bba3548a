package rest_test

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/sas"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/hubtest"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/rest"
)

// FuzzRequest feeds the HTTPS face arbitrary requests, as their first
// bytes arrive on the wire, with a valid service token added to some:
// whatever they hold, each is answered (a panic fails the fuzz), with a
// status HTTP knows, and an error answer names an IoT Hub error code.
func FuzzRequest(f *testing.F) {
	h := hubtest.New(f, hub.Options{})
	api := rest.New(h, rest.Config{Logger: slog.New(slog.DiscardHandler)})
	p, _ := h.Policy("iothubowner")
	tok, _ := sas.New("localhost", p.Name, p.PrimaryKey, time.Now().Add(time.Hour))
	v := "?api-version=2021-04-12"
	for _, seed := range []string{
		"PUT /devices/d1" + v + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 17\r\n\r\n{\"deviceId\":\"d1\"}",
		"PATCH /twins/d1" + v + " HTTP/1.1\r\nHost: localhost\r\nIf-Match: \"*\"\r\nContent-Length: 33\r\n\r\n{\"properties\":{\"desired\":{\"a\":1}}}",
		"POST /devices/query" + v + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 34\r\n\r\n{\"query\":\"SELECT * FROM devices\"}",
		"POST /devices/d1/messages/events" + v + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi",
		"GET /devices/d1/messages/devicebound" + v + " HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"POST /twins/d1/methods" + v + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\r\n{\"methodName\":\"m\",\"payload\":[[[[[[]]]]]]}",
		"DELETE /devices/a%2Fb" + v + " HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"PUT /jobs/v2/j" + v + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
	} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, authorize bool) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return // net/http answers 400 before any handler
		}
		req.RemoteAddr = "127.0.0.1:1"
		if authorize {
			req.Header.Set("Authorization", tok.String())
		}
		// A method call may wait its connect time-out for a device that
		// never comes: the client gives up first.
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Code >= 400 && rec.Header().Get("iothub-errorcode") == "" {
			t.Fatalf("%d without an error code: %s", rec.Code, rec.Body)
		}
	})
}
