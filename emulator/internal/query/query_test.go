package query

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// mapDoc is a document held as decoded JSON.
type mapDoc map[string]any

func (m mapDoc) Lookup(path []string) (any, bool) {
	var v any = map[string]any(m)
	for _, s := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = o[s]; !ok {
			for k, x := range o {
				if strings.EqualFold(k, s) {
					v, ok = x, true
				}
			}
			if !ok {
				return nil, false
			}
		}
	}
	return v, true
}

func docs(t *testing.T) []Doc {
	t.Helper()
	raw := []string{
		`{"deviceId":"sensor-1","status":"enabled","connectionState":"Connected","tags":{"location":{"region":"US"},"group":{"name":"north"},"reboot":true},
		  "properties":{"desired":{"config":"a","$version":4},"reported":{"config":"a","connectivity":"wired","rebootTime":"2024-01-02T00:00:00Z","telemetryConfig":{"status":"Success","sendFrequencyInSecs":60},"n":null}}}`,
		`{"deviceId":"sensor-2","status":"enabled","connectionState":"Disconnected","tags":{"location":{"region":"EU"}},
		  "properties":{"desired":{"config":"b","$version":1},"reported":{"config":"c","connectivity":"wifi","telemetryConfig":{"status":"Pending","sendFrequencyInSecs":30},"list":[1,2]}}}`,
		`{"deviceId":"edge-1","status":"disabled","connectionState":"Disconnected","capabilities":{"iotEdge":true},"tags":{"location":{"region":"US"},"reboot":true},
		  "properties":{"desired":{"$version":2},"reported":{"connectivity":"cellular","telemetryConfig":{"status":"Success","sendFrequencyInSecs":120}}}}`,
	}
	var out []Doc
	for _, r := range raw {
		d := json.NewDecoder(strings.NewReader(r))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, mapDoc(m))
	}
	return out
}

func ids(rows []any) []string {
	var out []string
	for _, r := range rows {
		if d, ok := r.(mapDoc); ok {
			out = append(out, d["deviceId"].(string))
		}
	}
	return out
}

// Ensure that each WHERE construct selects what Azure's would (the
// examples of service-api §6.4 among them).
func TestWhere(t *testing.T) {
	tests := []struct {
		where string
		want  []string
	}{
		{"tags.location.region = 'US'", []string{"sensor-1", "edge-1"}},
		{"tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60", []string{"sensor-1", "edge-1"}},
		{"tags.location.region = 'US' OR deviceId = 'sensor-2'", []string{"sensor-1", "sensor-2", "edge-1"}},
		{"properties.reported.connectivity IN ['wired', 'wifi']", []string{"sensor-1", "sensor-2"}},
		{"properties.reported.connectivity NIN ['wired', 'wifi']", []string{"edge-1"}},
		{"is_defined(properties.reported.rebootTime)", []string{"sensor-1"}},
		{"IS_DEFINED(properties.reported.n)", []string{"sensor-1"}},
		{"IS_NULL(properties.reported.n)", []string{"sensor-1"}},
		{"NOT IS_DEFINED(tags.reboot)", []string{"sensor-2"}},
		{"NOT (tags.reboot = true)", []string{}},
		{"status = 'enabled' AND connectionState = 'Disconnected'", []string{"sensor-2"}},
		{"STARTSWITH(deviceId, 'sensor-')", []string{"sensor-1", "sensor-2"}},
		{"ENDSWITH(deviceId, '-1')", []string{"sensor-1", "edge-1"}},
		{"capabilities.iotEdge = true", []string{"edge-1"}},
		{"properties.desired.$version > 3", []string{"sensor-1"}},
		{"tags.[[group]].name = 'north'", []string{"sensor-1"}},
		{"properties.desired.config = properties.reported.config", []string{"sensor-1"}},
		{"properties.reported.rebootTime > '2024-01-01'", []string{"sensor-1"}},
		{"deviceId != 'sensor-1'", []string{"sensor-2", "edge-1"}},
		{"deviceId <> 'sensor-1'", []string{"sensor-2", "edge-1"}},
		{"status = 'Enabled'", []string{}},
		{"DeviceId = 'edge-1'", []string{"edge-1"}},
		{"properties.reported.telemetryConfig.sendFrequencyInSecs < 60", []string{"sensor-2"}},
		{"properties.reported.telemetryConfig.sendFrequencyInSecs <= 60", []string{"sensor-1", "sensor-2"}},
		{"properties.reported.telemetryConfig.sendFrequencyInSecs * 2 = 240", []string{"edge-1"}},
		{"properties.reported.telemetryConfig.sendFrequencyInSecs = 0x3c", []string{"sensor-1"}},
		{"properties.reported.telemetryConfig.sendFrequencyInSecs = '60'", []string{}},
		{"properties.reported.list = [1,2]", []string{}},
		{"IS_ARRAY(properties.reported.list) AND IS_OBJECT(tags) AND IS_STRING(deviceId) AND IS_NUMBER(properties.desired.$version)", []string{"sensor-2"}},
		{"IS_BOOL(tags.reboot) AND IS_PRIMITIVE(tags.reboot)", []string{"sensor-1", "edge-1"}},
		{"devices.tags.location.region = 'EU'", []string{"sensor-2"}},
		{"deviceId = \"sensor-2\"", []string{"sensor-2"}},
		{"tags.missing = null", []string{}},
	}
	all := docs(t)
	for _, tt := range tests {
		t.Run(tt.where, func(t *testing.T) {
			q, err := Parse("SELECT * FROM devices WHERE " + tt.where)
			if err != nil {
				t.Fatal(err)
			}
			got := ids(q.Run(all))
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	tests := []struct {
		q    string
		want string
		raw  bool
	}{
		{"SELECT COUNT() AS totalNumberOfDevices FROM devices", `[{"totalNumberOfDevices":3}]`, true},
		{"select count() from devices where tags.reboot = true", `[{"$1":2}]`, true},
		{"SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
			`[{"numberOfDevices":2,"status":"Success"},{"numberOfDevices":1,"status":"Pending"}]`, true},
		{"SELECT deviceId, status FROM devices WHERE connectionState = 'Connected'", `[{"deviceId":"sensor-1","status":"enabled"}]`, true},
		{"SELECT DeviceId, properties.reported.rebootTime AS t FROM devices", `[{"DeviceId":"sensor-1","t":"2024-01-02T00:00:00Z"},{"DeviceId":"sensor-2"},{"DeviceId":"edge-1"}]`, true},
		{"SELECT TOP 1 deviceId FROM devices", `[{"deviceId":"sensor-1"}]`, true},
		{"SELECT SUM(properties.reported.telemetryConfig.sendFrequencyInSecs) AS s, AVG(properties.reported.telemetryConfig.sendFrequencyInSecs) AS a, MIN(deviceId) AS lo, MAX(deviceId) AS hi FROM devices",
			`[{"a":70,"hi":"sensor-2","lo":"edge-1","s":210}]`, true},
		{"SELECT * FROM devices.modules", `null`, false},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			q, err := Parse(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(q.Run(docs(t)))
			if q.From == Modules {
				b, _ = json.Marshal(q.Run(nil))
			}
			if string(b) != tt.want || q.Raw() != tt.raw {
				t.Fatalf("got %s (raw %v), want %s", b, q.Raw(), tt.want)
			}
		})
	}
	q, _ := Parse("SELECT TOP 2 * FROM devices")
	if got := ids(q.Run(docs(t))); len(got) != 2 {
		t.Fatalf("TOP 2: %v", got)
	}
}

// Ensure that what Azure rejects is rejected, with the position of the
// problem.
func TestRejected(t *testing.T) {
	tests := []struct {
		q, part string
		pos     int
	}{
		{"SELECT * FROM devices ORDER BY deviceId", "ORDER BY is not supported", 22},
		{"SELECT * FROM devices WHERE CONTAINS(deviceId, 'x')", "CONTAINS is not supported", 28},
		{"SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'x')", "STARTS_WITH is not supported", 28},
		{"SELECT * FROM devices WHERE deviceId IN ('a', 'b')", "square brackets", 40},
		{"SELECT * FROM devices WHERE tags.group.name = 'x'", "reserved word", 33},
		{"SELECT * FROM things", "FROM must be", 14},
		{"SELECT * FROM devices.twins", "FROM must be", 22},
		{"SELECT * devices", "expected FROM", 9},
		{"DELETE FROM devices", "expected SELECT", 0},
		{"SELECT * FROM devices WHERE", "unexpected the end", 27},
		{"SELECT * FROM devices WHERE deviceId = 'open", "unterminated string", 39},
		{"SELECT * FROM devices WHERE a = 1 b", "unexpected 'b'", 34},
		{"SELECT * FROM devices WHERE a ~ 1", "unexpected character", 30},
		{"SELECT TOP x * FROM devices", "whole number", 11},
		{"SELECT deviceId, COUNT() FROM devices", "GROUP BY path", 0},
		{"SELECT * FROM devices GROUP BY status", "not *", 0},
		{"SELECT deviceId FROM devices.jobs", "only SELECT *", 0},
		{"SELECT * FROM devices WHERE IS_DEFINED('x')", "property path", 28},
		{"SELECT * FROM devices WHERE STARTSWITH(deviceId)", "takes 2", 28},
		{"SELECT * FROM devices WHERE deviceId IN [deviceId]", "only constants", 41},
		{"SELECT * FROM devices WHERE tags.[[x = 1", "unterminated [[", 33},
		{"SELECT * FROM devices WHERE a = 'bad \\q escape'", "invalid escape", 37},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			_, err := Parse(tt.q)
			qe, ok := err.(*Error)
			if !ok || !strings.Contains(qe.Msg, tt.part) || qe.Pos != tt.pos {
				t.Fatalf("got %v, want %q at position %d", err, tt.part, tt.pos)
			}
		})
	}
}

func TestParseCondition(t *testing.T) {
	for cond, want := range map[string][]string{
		"*":                             {"sensor-1", "sensor-2", "edge-1"},
		"deviceId IN ['edge-1']":        {"edge-1"},
		"tags.reboot = true":            {"sensor-1", "edge-1"},
		"devices.deviceId = 'sensor-2'": {"sensor-2"},
	} {
		e, err := ParseCondition(cond)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range docs(t) {
			if Matches(e, d) {
				got = append(got, d.(mapDoc)["deviceId"].(string))
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", cond, got, want)
		}
	}
	if _, err := ParseCondition("deviceId = 'x' extra"); err == nil {
		t.Fatal("trailing text accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.x >= 60",
		"SELECT properties.reported.s AS s, COUNT() AS n FROM devices GROUP BY properties.reported.s",
		"SELECT TOP 10 deviceId FROM devices WHERE STARTSWITH(deviceId, 'a') OR NOT IS_DEFINED(tags.x)",
		"SELECT * FROM devices.jobs WHERE devices.jobs.status = 'completed'",
		"SELECT * FROM devices WHERE tags.[[group]] IN ['a', -1, 0x10, null, true]",
		"SELECT * FROM devices WHERE a = \"\\u0041\\'\"",
	} {
		f.Add(s)
	}
	all := []Doc{mapDoc{"deviceId": "a", "tags": map[string]any{"x": json.Number("1"), "group": "a"}}, mapDoc{}}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		q.Run(all)
	})
}
