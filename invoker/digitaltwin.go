package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// cmdDigitalTwin reads an IoT Plug and Play digital twin or invokes one
// of its commands:
//
//	invoker dt show -device ID
//	invoker dt command -device ID [-component C] -command NAME [-payload JSON]
func cmdDigitalTwin(ctx context.Context, e *env, sub string, args []string) error {
	id := e.flags.String("device", "", "device id")
	component := e.flags.String("component", "", "command: the component, for a component's command")
	command := e.flags.String("command", "", "command: the command name")
	payload := e.flags.String("payload", "", "command: JSON payload")
	if err := e.parse(args); err != nil {
		return err
	}
	if err := requireDevice(*id); err != nil {
		return err
	}
	switch sub {
	case "show":
		dt, err := e.svc.DigitalTwin(ctx, *id)
		if err != nil {
			return explain(*id, err)
		}
		e.print(dt, describeDigitalTwin(dt))
		return nil
	case "command":
		if *command == "" {
			return fmt.Errorf("%w: -command is required", errUsage)
		}
		p, err := parseJSON("payload", *payload)
		if err != nil {
			return err
		}
		res, err := e.svc.InvokeCommand(ctx, *id, *component, *command, p)
		if err != nil {
			return explain(*id, err)
		}
		e.print(map[string]any{"status": res.Status, "payload": res.Payload}, fmt.Sprintf("status %d\npayload %s", res.Status, res.Payload))
		return nil
	}
	return fmt.Errorf("%w: dt show|command", errUsage)
}

// describeDigitalTwin lists the model and each property with its
// synchronisation state.
func describeDigitalTwin(dt map[string]any) string {
	meta, _ := dt["$metadata"].(map[string]any)
	var b strings.Builder
	fmt.Fprintf(&b, "%v (model %v)\n", dt["$dtId"], meta["$model"])
	names := make([]string, 0, len(dt))
	for k := range dt {
		if !strings.HasPrefix(k, "$") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		v, _ := json.Marshal(dt[k])
		fmt.Fprintf(&b, "  %s = %s", k, v)
		if m, ok := meta[k].(map[string]any); ok && m["desiredValue"] != nil {
			fmt.Fprintf(&b, " (desired %v, acknowledged %v)", m["desiredValue"], m["ackCode"])
		}
		b.WriteString("\n")
	}
	return b.String()
}
