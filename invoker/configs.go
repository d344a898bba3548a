package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/cmdline"
	"github.com/iothub-emulator/iothub-emulator/api/iothub"
)

// cmdConfig manages automatic device configurations:
//
//	invoker config create -id ID -condition "tags.site = 'lab'" -desired JSON [-priority N] [-metric name=QUERY ...]
//	invoker config show|delete -id ID;  invoker config list
//
// create sets each top-level member of -desired as its own
// properties.desired path, then follows the configuration until every
// targeted twin has it applied (-wait, the default).
func cmdConfig(ctx context.Context, e *env, sub string, args []string) error {
	id := e.flags.String("id", "", "configuration id")
	cond := e.flags.String("condition", "", "create: the target condition, such as \"tags.site = 'lab'\", or *")
	desired := e.flags.String("desired", "", "create: desired properties to set (JSON object)")
	priority := e.flags.Int("priority", 10, "create: priority; the highest wins where configurations overlap")
	metrics := propertyFlags{}
	e.flags.Var(metrics, "metric", "create: a custom metric name=query (repeatable)")
	wait := e.flags.Duration("wait", 2*time.Minute, "create: how long to follow the configuration until it is applied to every device its condition selects (0: do not wait)")
	if err := e.parse(args); err != nil {
		return err
	}
	if sub != "list" && *id == "" {
		return fmt.Errorf("%w: -id is required", errUsage)
	}
	switch sub {
	case "list":
		cs, err := e.svc.Configurations(ctx, 0)
		if err != nil {
			return err
		}
		text := ""
		for _, c := range cs {
			text += describeConfig(c) + "\n"
		}
		e.print(cs, text)
		return nil
	case "show":
		c, err := e.svc.Configuration(ctx, *id)
		if err != nil {
			return err
		}
		e.print(c, describeConfig(c))
		return nil
	case "delete":
		if err := e.svc.DeleteConfiguration(ctx, *id); err != nil {
			return err
		}
		e.print(map[string]string{"deleted": *id}, "deleted configuration "+*id)
		return nil
	case "create":
	default:
		return fmt.Errorf("%w: config create|show|delete|list", errUsage)
	}
	if *cond == "" || *desired == "" {
		return fmt.Errorf("%w: create needs -condition and -desired", errUsage)
	}
	props, err := parseObject("desired", *desired)
	if err != nil {
		return err
	}
	content := map[string]any{}
	for k, v := range props {
		content["properties.desired."+k] = v
	}
	c, err := e.svc.CreateConfiguration(ctx, iothub.Configuration{ID: *id, TargetCondition: *cond, Priority: *priority,
		Content: iothub.ConfigurationContent{DeviceContent: content}, Metrics: iothub.ConfigurationMetrics{Queries: metrics}})
	if err != nil {
		return err
	}
	if *wait <= 0 {
		e.print(c, describeConfig(c))
		return nil
	}
	if *e.output == "text" {
		fmt.Fprintf(e.stdout, "created configuration %s for devices where %s\n", c.ID, c.TargetCondition)
	}
	deadline := time.Now().Add(*wait)
	prog := cmdline.NewProgress(e.stdout)
	defer prog.Done()
	for {
		c, err = e.svc.Configuration(ctx, *id)
		if err != nil {
			return err
		}
		r := c.SystemMetrics.Results
		if *e.output == "text" {
			prog.Update(fmt.Sprintf("applied to %d of %d targeted devices", r[iothub.MetricApplied], r[iothub.MetricTargeted]))
		}
		if r[iothub.MetricApplied] == r[iothub.MetricTargeted] && r[iothub.MetricTargeted] > 0 {
			break
		}
		if time.Now().After(deadline) {
			prog.Done()
			e.print(c, describeConfig(c))
			return fmt.Errorf("configuration %s: applied to %d of %d targeted devices after %s", c.ID, r[iothub.MetricApplied], r[iothub.MetricTargeted], *wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	prog.Done()
	e.print(c, describeConfig(c))
	return nil
}

func describeConfig(c iothub.Configuration) string {
	r := c.SystemMetrics.Results
	s := fmt.Sprintf("%s (priority %d): targets %d, applied %d; where %s", c.ID, c.Priority, r[iothub.MetricTargeted], r[iothub.MetricApplied], c.TargetCondition)
	names := make([]string, 0, len(c.Metrics.Results))
	for n := range c.Metrics.Results {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s += fmt.Sprintf("; %s %d", n, c.Metrics.Results[n])
	}
	return s
}
