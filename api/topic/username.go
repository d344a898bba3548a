package topic

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// Username is the CONNECT username of a device (device-protocol §4.1):
// {host}/{deviceId}[/{moduleId}]/?api-version=...[&model-id=...][&DeviceClientType=...]
type Username struct {
	Host             string
	DeviceID         string
	ModuleID         string
	APIVersion       string
	ModelID          string // model-id, the IoT Plug and Play model
	DeviceClientType string // the SDK's user agent
}

// String renders u in the '?' form the current SDKs send.
func (u Username) String() string {
	s := u.Host + "/" + u.DeviceID + "/"
	if u.ModuleID != "" {
		s += u.ModuleID + "/"
	}
	s += "?api-version=" + iothub.Escape(u.APIVersion)
	if u.ModelID != "" {
		s += "&model-id=" + iothub.Escape(u.ModelID)
	}
	if u.DeviceClientType != "" {
		s += "&DeviceClientType=" + iothub.Escape(u.DeviceClientType)
	}
	return s
}

// ParseUsername parses a CONNECT username in the '?' form or the legacy form
// without '?' (whose last segment must hold api-version=). Segments split
// at '/', never at '?' or '=', because device ids may contain both. Unknown
// query parameters are ignored; a missing api-version is allowed (the hub
// accepts the connection).
func ParseUsername(s string) (Username, error) {
	segs := strings.Split(s, "/")
	if len(segs) != 3 && len(segs) != 4 {
		return Username{}, fmt.Errorf("username %q: want {host}/{deviceId}[/{moduleId}]/?api-version={version}", s)
	}
	last := segs[len(segs)-1]
	q, ok := strings.CutPrefix(last, "?")
	if !ok {
		if !strings.Contains(last, "api-version=") {
			return Username{}, fmt.Errorf("username %q: the last segment must start with '?' or hold api-version=", s)
		}
		q = last
	}
	u := Username{Host: segs[0], DeviceID: segs[1]}
	if len(segs) == 4 {
		u.ModuleID = segs[2]
		if u.ModuleID == "" {
			return Username{}, fmt.Errorf("username %q: empty module id", s)
		}
	}
	if u.Host == "" || u.DeviceID == "" {
		return Username{}, fmt.Errorf("username %q: empty host or device id", s)
	}
	for _, item := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(item, "=")
		dv, err := url.PathUnescape(v)
		if err != nil {
			return Username{}, fmt.Errorf("username %q: parameter %q is not valid percent-encoding", s, k)
		}
		switch k {
		case "api-version":
			u.APIVersion = dv
		case "model-id":
			u.ModelID = dv
		case "DeviceClientType":
			u.DeviceClientType = dv
		}
	}
	return u, nil
}
