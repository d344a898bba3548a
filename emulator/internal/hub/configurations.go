package hub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/api/iothub"
	"github.com/iothub-emulator/iothub-emulator/emulator/internal/query"
)

// cfgState holds the configurations (automatic device management,
// service-api §9) and the worker that applies them.
type cfgState struct {
	mu   sync.Mutex
	byID map[string]iothub.Configuration // guarded by mu

	clean bool          // worker only: no configurations at the last evaluation either
	kick  chan struct{} // asks the worker for an evaluation now
	stop  chan struct{} // closed by Close
	done  chan struct{} // closed when the worker has stopped

	evalMu    sync.Mutex
	evaluated chan struct{} // guarded by evalMu; closed and replaced when an evaluation ends
}

func (h *Hub) loadConfigurations() error {
	h.cfgs.byID = map[string]iothub.Configuration{}
	h.cfgs.kick = make(chan struct{}, 1)
	h.cfgs.evaluated = make(chan struct{})
	err := h.svcStore.LoadConfigurations(func(c iothub.Configuration) error {
		h.cfgs.byID[c.ID] = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("load configurations: %w", err)
	}
	return nil
}

// startConfigurations runs the worker that applies configurations: at
// once, after every change of a configuration and every
// Options.ConfigurationInterval.
func (h *Hub) startConfigurations() {
	h.cfgs.stop, h.cfgs.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.cfgs.done)
		var tick <-chan time.Time
		if h.opts.ConfigurationInterval > 0 {
			t := time.NewTicker(h.opts.ConfigurationInterval)
			defer t.Stop()
			tick = t.C
		}
		for {
			h.applyConfigurations()
			h.cfgs.evalMu.Lock()
			close(h.cfgs.evaluated)
			h.cfgs.evaluated = make(chan struct{})
			h.cfgs.evalMu.Unlock()
			select {
			case <-h.cfgs.stop:
				return
			case <-tick:
			case <-h.cfgs.kick:
			}
		}
	}()
}

func (h *Hub) stopConfigurations() {
	if h.cfgs.stop != nil {
		close(h.cfgs.stop)
		<-h.cfgs.done
		h.cfgs.stop = nil
	}
}

// AwaitConfigurations returns once an evaluation of the configurations
// that began after the call has ended, so their content is applied, or
// when ctx ends.
func (h *Hub) AwaitConfigurations(ctx context.Context) error {
	// The evaluation running now may have begun before the call: wait for
	// the end of the next one.
	for range 2 {
		h.cfgs.evalMu.Lock()
		ended := h.cfgs.evaluated
		h.cfgs.evalMu.Unlock()
		h.kickConfigurations()
		select {
		case <-ended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (h *Hub) kickConfigurations() {
	select {
	case h.cfgs.kick <- struct{}{}:
	default:
	}
}

// PutConfiguration creates a configuration (no ifMatch) or updates one
// whose etag matches ifMatch ("*" matches any); created says which. Only
// the target condition, priority, labels and custom metrics change on an
// update: the content is immutable (service-api §9).
func (h *Hub) PutConfiguration(ctx context.Context, c iothub.Configuration, ifMatch string) (iothub.Configuration, bool, error) {
	if err := validateConfiguration(&c); err != nil {
		return iothub.Configuration{}, false, err
	}
	stored, created, err := h.storeConfiguration(c, ifMatch)
	if err != nil {
		return iothub.Configuration{}, false, err
	}
	// Metrics scan every twin: not under the lock the worker takes.
	return h.withMetrics(stored), created, nil
}

// storeConfiguration creates or updates c under the configurations' lock.
func (h *Hub) storeConfiguration(c iothub.Configuration, ifMatch string) (iothub.Configuration, bool, error) {
	h.cfgs.mu.Lock()
	defer h.cfgs.mu.Unlock()
	cur, exists := h.cfgs.byID[c.ID]
	now := iothub.NewTime(h.now())
	switch {
	case ifMatch == "" && exists:
		return iothub.Configuration{}, false, iothub.Errorf(iothub.ConfigurationAlreadyExists, "A configuration with ID '%s' already exists.", c.ID)
	case ifMatch == "" && len(h.cfgs.byID) >= iothub.MaxConfigurations:
		return iothub.Configuration{}, false, iothub.Errorf(iothub.ConfigurationCountLimitExceeded, "a hub holds at most %d configurations", iothub.MaxConfigurations)
	case ifMatch == "":
		c.CreatedTimeUtc, c.LastUpdatedTimeUtc, c.ETag = now, now, deviceETag(1)
	case !exists:
		return iothub.Configuration{}, false, iothub.Errorf(iothub.ConfigurationNotFound, "%s", c.ID)
	default:
		if err := matchETag(ifMatch, cur.ETag); err != nil {
			return iothub.Configuration{}, false, err
		}
		if !reflect.DeepEqual(normalizeContent(c.Content), normalizeContent(cur.Content)) {
			return iothub.Configuration{}, false, iothub.Errorf(iothub.CannotModifyImmutableConfigurationContent,
				"the content of configuration '%s' cannot change; create a new configuration", c.ID)
		}
		next := cur
		next.TargetCondition, next.Priority, next.Labels, next.Metrics.Queries = c.TargetCondition, c.Priority, c.Labels, c.Metrics.Queries
		next.LastUpdatedTimeUtc = now
		next.ETag = deviceETag(etagCounter(cur.ETag) + 1)
		c = next
	}
	c.SystemMetrics = iothub.ConfigurationMetrics{}
	c.Metrics.Results = nil
	if err := h.svcStore.PutConfiguration(&c); err != nil {
		h.log.Error("store write failed", "configuration", c.ID, "error", err)
		return iothub.Configuration{}, false, iothub.Errorf(iothub.ServerError, "the configuration could not be stored")
	}
	h.cfgs.byID[c.ID] = c
	h.log.Info("configuration stored", "configuration", c.ID, "created", !exists)
	h.kickConfigurations()
	return c, !exists, nil
}

// validateConfiguration checks what a configuration may hold and fills in
// the schema version.
func validateConfiguration(c *iothub.Configuration) error {
	if !iothub.ValidID(c.ID) {
		return iothub.Errorf(iothub.ArgumentInvalid, "Configuration ID %q is invalid", c.ID)
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = "1.0"
	}
	if c.SchemaVersion != "1.0" {
		return iothub.Errorf(iothub.ArgumentInvalid, "schemaVersion must be 1.0, not %q", c.SchemaVersion)
	}
	if _, err := query.ParseCondition(c.TargetCondition); err != nil && c.TargetCondition != "" {
		return iothub.Errorf(iothub.InvalidConfigurationTargetCondition, "the target condition is invalid: %v", err)
	}
	for name, q := range c.Metrics.Queries {
		if _, err := query.Parse(q); err != nil {
			return iothub.Errorf(iothub.InvalidConfigurationCustomMetricsQuery, "the metric query %q is invalid: %v", name, err)
		}
	}
	if len(c.Content.ModuleContent) > 0 {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "moduleContent (configurations of module twins) is not supported by the emulator")
	}
	if len(c.Content.ModulesContent) > 0 {
		if len(c.Content.DeviceContent) > 0 {
			return iothub.Errorf(iothub.InvalidConfigurationContent, "a configuration has deviceContent or modulesContent, not both")
		}
		if _, err := iothub.ParseModulesContent(c.Content.ModulesContent); err != nil {
			return iothub.Errorf(iothub.InvalidConfigurationContent, "%v", err)
		}
		return nil
	}
	if len(c.Content.DeviceContent) == 0 {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "the configuration has no deviceContent or modulesContent")
	}
	if _, err := contentPatch(c.Content.DeviceContent); err != nil {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "%v", err)
	}
	return nil
}

// normalizeContent makes equal content compare equal whatever its number
// representation.
func normalizeContent(c iothub.ConfigurationContent) any {
	b, _ := json.Marshal(c)
	v, _ := iothub.DecodeValue(b)
	return v
}

// contentPatch turns deviceContent into one desired-properties patch.
func contentPatch(content map[string]any) (map[string]any, error) {
	patch := map[string]any{}
	keys := make([]string, 0, len(content))
	for k := range content {
		keys = append(keys, k)
	}
	sort.Strings(keys) // "properties.desired" before its sub-paths
	for _, k := range keys {
		path, err := iothub.DesiredPath(k)
		if err != nil {
			return nil, err
		}
		v := content[k]
		if len(path) == 0 {
			obj, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("the value of %q must be an object", k)
			}
			maps.Copy(patch, obj)
			continue
		}
		m := patch
		for _, seg := range path[:len(path)-1] {
			next, ok := m[seg].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[seg] = next
			}
			m = next
		}
		m[path[len(path)-1]] = v
	}
	if err := iothub.ValidatePatch(patch); err != nil {
		return nil, err
	}
	return patch, nil
}

func etagCounter(etag string) int64 {
	b, _ := base64.StdEncoding.DecodeString(etag)
	n, _ := strconv.ParseInt(string(b), 10, 64)
	return n
}

// Configuration returns a configuration with its metrics counted now.
func (h *Hub) Configuration(id string) (iothub.Configuration, error) {
	h.cfgs.mu.Lock()
	c, ok := h.cfgs.byID[id]
	h.cfgs.mu.Unlock()
	if !ok {
		return iothub.Configuration{}, iothub.Errorf(iothub.ConfigurationNotFound, "%s", id)
	}
	return h.withMetrics(c), nil
}

// Configurations returns up to max configurations by id (max ≤ 0: all).
func (h *Hub) Configurations(max int) []iothub.Configuration {
	h.cfgs.mu.Lock()
	all := make([]iothub.Configuration, 0, len(h.cfgs.byID))
	for _, c := range h.cfgs.byID {
		all = append(all, c)
	}
	h.cfgs.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	if max > 0 && len(all) > max {
		all = all[:max]
	}
	for i := range all {
		all[i] = h.withMetrics(all[i])
	}
	return all
}

// DeleteConfiguration removes a configuration; ifMatch, when given, must
// match its etag. The desired properties it applied stay; the twins stop
// listing it at the next evaluation.
func (h *Hub) DeleteConfiguration(ctx context.Context, id, ifMatch string) error {
	h.cfgs.mu.Lock()
	defer h.cfgs.mu.Unlock()
	c, ok := h.cfgs.byID[id]
	if !ok {
		return iothub.Errorf(iothub.ConfigurationNotFound, "%s", id)
	}
	if ifMatch != "" {
		if err := matchETag(ifMatch, c.ETag); err != nil {
			return err
		}
	}
	if err := h.svcStore.DeleteConfiguration(id); err != nil {
		h.log.Error("store delete failed", "configuration", id, "error", err)
		return iothub.Errorf(iothub.ServerError, "the configuration could not be deleted")
	}
	delete(h.cfgs.byID, id)
	h.log.Info("configuration deleted", "configuration", id)
	h.kickConfigurations()
	return nil
}

// TestConfigurationQueries checks a target condition and metric queries
// without storing anything.
func (h *Hub) TestConfigurationQueries(t iothub.ConfigurationQueriesTest) iothub.ConfigurationQueriesTestResult {
	res := iothub.ConfigurationQueriesTestResult{CustomMetricQueryErrors: map[string]string{}}
	if _, err := query.ParseCondition(t.TargetCondition); err != nil && t.TargetCondition != "" {
		res.TargetConditionError = err.Error()
	}
	for name, q := range t.CustomMetricQueries {
		if _, err := query.Parse(q); err != nil {
			res.CustomMetricQueryErrors[name] = err.Error()
		}
	}
	return res
}

// withMetrics fills in the system metrics, as Azure counts them: the
// twins the target condition selects now, and those the configuration was
// applied to; and the custom metrics, by running their queries.
func (h *Hub) withMetrics(c iothub.Configuration) iothub.Configuration {
	if len(c.Content.ModulesContent) > 0 {
		c.SystemMetrics = h.deploymentMetrics(c)
		return h.withCustomMetrics(c)
	}
	var targeted, applied int64
	cond, err := query.ParseCondition(c.TargetCondition)
	for _, d := range twinDocs(h.deviceEntries()) {
		if c.TargetCondition != "" && err == nil && query.Matches(cond, d) {
			targeted++
		}
		if d.(*twinDoc).rec.Twin.Configurations[c.ID].Status == iothub.ConfigurationApplied {
			applied++
		}
	}
	c.SystemMetrics = iothub.ConfigurationMetrics{
		Results: map[string]int64{iothub.MetricTargeted: targeted, iothub.MetricApplied: applied},
		Queries: map[string]string{
			iothub.MetricTargeted: "select deviceId from devices where " + c.TargetCondition,
			iothub.MetricApplied:  "select deviceId from devices where configurations.[[" + c.ID + "]].status = 'Applied'",
		},
	}
	return h.withCustomMetrics(c)
}

// withCustomMetrics runs a configuration's metric queries.
func (h *Hub) withCustomMetrics(c iothub.Configuration) iothub.Configuration {
	c.Metrics.Results = map[string]int64{}
	if c.Metrics.Queries == nil {
		c.Metrics.Queries = map[string]string{}
	}
	for name, q := range c.Metrics.Queries {
		if r, err := h.Query(q); err == nil {
			c.Metrics.Results[name] = int64(len(r.Rows))
		}
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	return c
}

// applyConfigurations evaluates every configuration against every device
// twin once: each twin lists the configurations whose target condition
// it meets, and the one with the highest priority (the newest on a tie)
// has its content applied to the desired properties, once. Only the
// worker calls it.
func (h *Hub) applyConfigurations() {
	type compiled struct {
		c    iothub.Configuration
		cond query.Expr
	}
	h.cfgs.mu.Lock()
	var cfgs []compiled
	var deps []compiledDeployment
	for _, c := range h.cfgs.byID {
		if c.TargetCondition == "" {
			continue
		}
		cond, err := query.ParseCondition(c.TargetCondition)
		if err != nil {
			continue
		}
		if len(c.Content.ModulesContent) > 0 {
			if d, err := iothub.ParseModulesContent(c.Content.ModulesContent); err == nil {
				deps = append(deps, compiledDeployment{c: &c, cond: cond, d: d})
			}
			continue
		}
		cfgs = append(cfgs, compiled{c, cond})
	}
	none := len(h.cfgs.byID) == 0
	h.cfgs.mu.Unlock()
	if none && h.cfgs.clean {
		return // nothing to apply, and no twin lists a configuration
	}
	h.cfgs.clean = none
	sort.Slice(cfgs, func(i, j int) bool { return ranksAbove(&cfgs[i].c, &cfgs[j].c) })
	sort.Slice(deps, func(i, j int) bool { return ranksAbove(deps[i].c, deps[j].c) })
	h.applyDeployments(deps)
	// Twins are written by a few workers at once, so their commits share
	// fsyncs: a configuration may target the whole fleet.
	docs := make(chan query.Doc)
	var wg sync.WaitGroup
	for range configurationWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range docs {
				var winner *iothub.Configuration
				want := map[string]iothub.ConfigurationStatus{}
				for i := range cfgs {
					if !query.Matches(cfgs[i].cond, d) {
						continue
					}
					want[cfgs[i].c.ID] = iothub.ConfigurationStatus{Status: iothub.ConfigurationTargeted}
					if winner == nil {
						winner = &cfgs[i].c
					}
				}
				h.applyToTwin(d.(*twinDoc).e, winner, want)
			}
		}()
	}
	for _, d := range twinDocs(h.deviceEntries()) {
		docs <- d
	}
	close(docs)
	wg.Wait()
}

// ranksAbove orders configurations as Azure picks among them: the
// higher priority, then the newer, wins.
func ranksAbove(a, b *iothub.Configuration) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if !a.CreatedTimeUtc.Equal(b.CreatedTimeUtc.Time) {
		return a.CreatedTimeUtc.After(b.CreatedTimeUtc.Time)
	}
	return a.ID < b.ID
}

// configurationWorkers is how many twins an evaluation writes at once.
const configurationWorkers = 16

// applyToTwin brings one twin's configuration statuses to want (deleted
// configurations drop out) and applies winner's content if it was not
// applied already.
func (h *Hub) applyToTwin(e *entry, winner *iothub.Configuration, want map[string]iothub.ConfigurationStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.rec.Load()
	var patch map[string]any
	if winner != nil {
		if cur.Twin.Configurations[winner.ID].Status == iothub.ConfigurationApplied {
			want[winner.ID] = iothub.ConfigurationStatus{Status: iothub.ConfigurationApplied}
		} else if p, err := contentPatch(winner.Content.DeviceContent); err == nil {
			patch = p
			want[winner.ID] = iothub.ConfigurationStatus{Status: iothub.ConfigurationApplied}
		}
	}
	if len(want) == 0 {
		want = nil
	}
	if patch == nil && maps.Equal(cur.Twin.Configurations, want) {
		return
	}
	next := e.clone()
	next.Twin.Configurations = want
	next.TwinETag++
	var notify []byte
	if patch != nil {
		notify = mergeDesired(next, patch, iothub.NewTime(h.now()))
		if err := iothub.CheckSectionSize("desired", next.Twin.Properties.Desired.Props); err != nil {
			h.log.Warn("configuration not applied", "device", e.id, "configuration", winner.ID, "error", err)
			return
		}
		next.Twin.Version++
	}
	if err := h.commitLocked(e, next); err != nil {
		return
	}
	if patch != nil {
		h.log.Info("configuration applied", "device", e.id, "configuration", winner.ID)
		h.sendDesired(e, next.Twin.Properties.Desired.Version, notify)
	}
}
