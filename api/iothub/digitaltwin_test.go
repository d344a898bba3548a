package iothub

import (
	"encoding/json"
	"testing"
	"time"
)

// Ensure that a device twin renders as the digital twin of the IoT Plug
// and Play documentation's example: read-only and writable properties at
// the root and in a component, with their metadata.
func TestDigitalTwin(t *testing.T) {
	at := NewTime(time.Date(2020, 7, 17, 6, 11, 4, 930915900, time.UTC))
	twin := Twin{DeviceID: "sample-device", ModelID: "dtmi:com:example:TemperatureController;1",
		Properties: TwinProperties{
			Desired: TwinCollection{Version: 4,
				Props: map[string]any{"thermostat1": map[string]any{"__t": "c", "targetTemperature": json.Number("21.8")}, "fanSpeed": json.Number("2")},
				Metadata: &Metadata{Children: map[string]*Metadata{
					"thermostat1": {Children: map[string]*Metadata{"targetTemperature": {LastUpdated: at, LastUpdatedVersion: 4}}},
					"fanSpeed":    {LastUpdated: at, LastUpdatedVersion: 2},
				}}},
			Reported: TwinCollection{Version: 11,
				Props: map[string]any{
					"serialNumber": "alwinexlepaho8329",
					"thermostat1": map[string]any{"__t": "c", "maxTempSinceLastReboot": json.Number("25.3"),
						"targetTemperature": map[string]any{"value": json.Number("21.8"), "ac": json.Number("200"), "av": json.Number("4"), "ad": "Successfully executed patch"}},
				},
				Metadata: &Metadata{Children: map[string]*Metadata{
					"serialNumber": {LastUpdated: at},
					"thermostat1": {Children: map[string]*Metadata{
						"maxTempSinceLastReboot": {LastUpdated: at},
						"targetTemperature":      {LastUpdated: at},
					}},
				}}},
		}}
	got, _ := json.Marshal(DigitalTwin(twin))
	want := `{"$dtId":"sample-device","$metadata":{"$model":"dtmi:com:example:TemperatureController;1",` +
		`"fanSpeed":{"desiredValue":2,"desiredVersion":2},"serialNumber":{"lastUpdateTime":"2020-07-17T06:11:04.9309159Z"}},` +
		`"serialNumber":"alwinexlepaho8329",` +
		`"thermostat1":{"$metadata":{"maxTempSinceLastReboot":{"lastUpdateTime":"2020-07-17T06:11:04.9309159Z"},` +
		`"targetTemperature":{"ackCode":200,"ackDescription":"Successfully executed patch","ackVersion":4,"desiredValue":21.8,"desiredVersion":4,"lastUpdateTime":"2020-07-17T06:11:04.9309159Z"}},` +
		`"maxTempSinceLastReboot":25.3,"targetTemperature":21.8}}`
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// Ensure that digital twin updates become the documented desired changes
// and that what the hub refuses is refused.
func TestDigitalTwinDesired(t *testing.T) {
	desired := map[string]any{"thermostat2": map[string]any{"__t": "c", "targetTemperature": 20, "other": 1}}
	components := map[string]bool{"thermostat1": true, "thermostat2": true}
	tests := []struct {
		name string
		ops  string
		want string
		code ErrorCode
	}{
		{"root property", `[{"op":"add","path":"/fanSpeed","value":3}]`, `{"fanSpeed":3}`, 0},
		{"remove root property", `[{"op":"remove","path":"/fanSpeed"}]`, `{"fanSpeed":null}`, 0},
		{"component property", `[{"op":"replace","path":"/thermostat1/targetTemperature","value":21.4}]`, `{"thermostat1":{"__t":"c","targetTemperature":21.4}}`, 0},
		{"remove component property", `[{"op":"remove","path":"/thermostat2/targetTemperature"}]`, `{"thermostat2":{"__t":"c","targetTemperature":null}}`, 0},
		{"whole component clears the rest", `[{"op":"replace","path":"/thermostat2","value":{"targetTemperature":21,"$metadata":{}}}]`, `{"thermostat2":{"__t":"c","other":null,"targetTemperature":21}}`, 0},
		{"remove component", `[{"op":"remove","path":"/thermostat2"}]`, `{"thermostat2":null}`, 0},
		{"new component then its property", `[{"op":"add","path":"/t3","value":{"$metadata":{}}},{"op":"add","path":"/t3/x","value":1}]`, `{"t3":{"__t":"c","x":1}}`, 0},
		{"object value", `[{"op":"add","path":"/settings","value":{"mode":"eco","levels":{"a":1}}}]`, `{"settings":{"levels":{"a":1},"mode":"eco"}}`, 0},
		{"move", `[{"op":"move","from":"/a","path":"/b"}]`, "", InvalidDigitalTwinJSONPatch},
		{"deep path", `[{"op":"add","path":"/a/b/c","value":1}]`, "", InvalidDigitalTwinPatchPath},
		{"not a component", `[{"op":"add","path":"/fanSpeed/x","value":1}]`, "", InvalidDigitalTwinPatchPath},
		{"bad name", `[{"op":"add","path":"/9lives","value":1}]`, "", InvalidDigitalTwinPatchPath},
		{"array value", `[{"op":"add","path":"/list","value":[1,2]}]`, "", InvalidDigitalTwinPatch},
		{"bad field name", `[{"op":"add","path":"/obj","value":{"a-b":1}}]`, "", InvalidDigitalTwinPatch},
	}
	for _, tt := range tests {
		var ops []JSONPatchOp
		if err := json.Unmarshal([]byte(tt.ops), &ops); err != nil {
			t.Fatal(err)
		}
		got, err := DigitalTwinDesired(ops, desired, components)
		if tt.code != 0 {
			if CodeOf(err) != tt.code {
				t.Errorf("%s: got %v, want %s", tt.name, err, tt.code)
			}
			continue
		}
		b, _ := json.Marshal(got)
		if err != nil || string(b) != tt.want {
			t.Errorf("%s: got %s, %v, want %s", tt.name, b, err, tt.want)
		}
	}
}

// Ensure that DTDL names follow the documented rules.
func TestValidDTDLName(t *testing.T) {
	for name, want := range map[string]bool{"a": true, "targetTemperature": true, "a_1": true, "A9": true,
		"": false, "1a": false, "_a": false, "a_": false, "a-b": false, "a.b": false,
		"a234567890123456789012345678901234567890123456789012345678901234":  true,
		"a2345678901234567890123456789012345678901234567890123456789012345": false} {
		if ValidDTDLName(name) != want {
			t.Errorf("ValidDTDLName(%q) = %v", name, !want)
		}
	}
}
