package iothub

import (
	"fmt"
	"strings"
)

// MaxConfigurations is how many configurations a hub holds (service-api §9).
const MaxConfigurations = 100

// Configuration is an automatic device management configuration
// (service-api §9): content applied to the twins its target condition
// selects, the highest priority winning, with metrics counted by queries.
type Configuration struct {
	ID                 string               `json:"id"`
	SchemaVersion      string               `json:"schemaVersion"`
	Labels             map[string]string    `json:"labels"`
	Content            ConfigurationContent `json:"content"`
	ContentType        string               `json:"contentType,omitempty"`
	TargetCondition    string               `json:"targetCondition"`
	CreatedTimeUtc     Time                 `json:"createdTimeUtc"`
	LastUpdatedTimeUtc Time                 `json:"lastUpdatedTimeUtc"`
	Priority           int                  `json:"priority"`
	SystemMetrics      ConfigurationMetrics `json:"systemMetrics"`
	Metrics            ConfigurationMetrics `json:"metrics"`
	ETag               string               `json:"etag"`
}

// ConfigurationContent is what a configuration applies. DeviceContent maps
// twin paths ("properties.desired.x" or "properties.desired") to values;
// the module forms are for IoT Edge.
type ConfigurationContent struct {
	DeviceContent  map[string]any `json:"deviceContent,omitempty"`
	ModulesContent map[string]any `json:"modulesContent,omitempty"`
	ModuleContent  map[string]any `json:"moduleContent,omitempty"`
}

// ConfigurationMetrics are named queries and the counts they gave.
type ConfigurationMetrics struct {
	Results map[string]int64  `json:"results"`
	Queries map[string]string `json:"queries"`
}

// System metric names (service-api §9).
const (
	MetricTargeted = "targetedCount"
	MetricApplied  = "appliedCount"
)

// ConfigurationStatus is where a configuration stands on a twin, in the
// twin's "configurations" member (service-api §4.1).
type ConfigurationStatus struct {
	Status string `json:"status"`
}

// Configuration statuses on a twin.
const (
	ConfigurationTargeted = "Targeted"
	ConfigurationApplied  = "Applied"
)

// ConfigurationQueriesTest is the body of POST /configurations/testQueries.
type ConfigurationQueriesTest struct {
	TargetCondition     string            `json:"targetCondition"`
	CustomMetricQueries map[string]string `json:"customMetricQueries"`
}

// ConfigurationQueriesTestResult answers it: an empty string where a
// query is valid.
type ConfigurationQueriesTestResult struct {
	TargetConditionError    string            `json:"targetConditionError"`
	CustomMetricQueryErrors map[string]string `json:"customMetricQueryErrors"`
}

// DesiredPath splits a deviceContent key into the path below the desired
// section: "properties.desired.a.b" is ["a", "b"] and "properties.desired"
// is []. Any other key is an error: device configurations set desired
// properties only.
func DesiredPath(key string) ([]string, error) {
	const prefix = "properties.desired"
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || (rest != "" && rest[0] != '.') {
		return nil, fmt.Errorf("deviceContent key %q is not under properties.desired", key)
	}
	if rest == "" {
		return []string{}, nil
	}
	path := strings.Split(rest[1:], ".")
	for _, p := range path {
		if p == "" {
			return nil, fmt.Errorf("deviceContent key %q has an empty segment", key)
		}
	}
	return path, nil
}
