package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// propertyFlags collects repeated -property k=v flags.
type propertyFlags map[string]string

func (p propertyFlags) String() string { return fmt.Sprint(map[string]string(p)) }

func (p propertyFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	p[k] = val
	return nil
}

// cmdC2D sends a cloud-to-device message (over AMQP, as the official SDKs
// do, so it works against Azure as well) or purges a device's queue:
//
//	invoker c2d send -device ID -body TEXT [-message-id ID] [-property k=v ...]
//	invoker c2d purge -device ID
func cmdC2D(ctx context.Context, e *env, sub string, args []string) error {
	id := e.flags.String("device", "", "device id")
	body := e.flags.String("body", "", "send: the message body")
	mid := e.flags.String("message-id", "", "send: the message id")
	props := propertyFlags{}
	e.flags.Var(props, "property", "send: an application property key=value (repeatable)")
	if err := e.parse(args); err != nil {
		return err
	}
	if err := requireDevice(*id); err != nil {
		return err
	}
	switch sub {
	case "send":
		m := iothub.CloudToDeviceMessage{Body: *body, MessageID: *mid, Properties: props}
		if err := e.svc.SendC2D(ctx, *id, m); err != nil {
			return explain(*id, err)
		}
		e.print(map[string]any{"deviceId": *id, "queued": true}, "queued a message for "+*id)
		return nil
	case "purge":
		n, err := e.svc.PurgeC2D(ctx, *id)
		if err != nil {
			return explain(*id, err)
		}
		e.print(map[string]any{"deviceId": *id, "totalMessagesPurged": n}, fmt.Sprintf("purged %d messages for %s", n, *id))
		return nil
	}
	return fmt.Errorf("%w: c2d send|purge", errUsage)
}
