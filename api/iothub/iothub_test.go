package iothub

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2024, 5, 1, 12, 30, 45, 123456700, time.UTC)

func ptr[T any](v T) *T { return &v }

// goldenShapes lists one value of every wire shape. Each cites the section
// of the research notes it follows.
func goldenShapes() map[string]any {
	at := NewTime(t0)
	return map[string]any{
		// service-api §3.1 / §3.3
		"device.json": Device{
			DeviceID: "sensor-01", GenerationID: "638500000000000000", ETag: "MQ==",
			ConnectionState: Disconnected, Status: StatusEnabled,
			LastActivityTime: at,
			Authentication: Authentication{
				SymmetricKey: SymmetricKey{PrimaryKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", SecondaryKey: "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="},
				Type:         AuthSAS,
			},
		},
		// service-api §3.8
		"module.json": Module{ModuleID: "mod1", DeviceID: "sensor-01", GenerationID: "638500000000000001", ETag: "MQ==",
			ConnectionState: Connected, LastActivityTime: at,
			Authentication: Authentication{SymmetricKey: SymmetricKey{PrimaryKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", SecondaryKey: "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="}, Type: AuthSAS}},
		// service-api §4.1
		"twin.json": Twin{
			DeviceID: "sensor-01", ETag: "AAAAAAAAAAI=", DeviceETag: "MQ==", Status: StatusEnabled,
			ConnectionState: Connected, LastActivityTime: at, AuthenticationType: AuthSAS, Version: 4,
			Capabilities: &Capabilities{},
			Tags:         map[string]any{"location": map[string]any{"region": "EU"}},
			Properties: TwinProperties{
				Desired: TwinCollection{
					Props:   map[string]any{"telemetryInterval": json.Number("10")},
					Version: 2,
					Metadata: &Metadata{LastUpdated: at, LastUpdatedVersion: 2, Children: map[string]*Metadata{
						"telemetryInterval": {LastUpdated: at, LastUpdatedVersion: 2},
					}},
				},
				Reported: TwinCollection{
					Props:   map[string]any{"rebootTime": "2024-05-01T12:30:45Z"},
					Version: 2,
					Metadata: &Metadata{LastUpdated: at, Children: map[string]*Metadata{
						"rebootTime": {LastUpdated: at},
					}},
				},
			},
		},
		// device-protocol §11.1: the body of $iothub/twin/res/200
		"twin-device-get.json": TwinProperties{
			Desired:  TwinCollection{Props: map[string]any{"telemetryInterval": json.Number("5")}, Version: 3},
			Reported: TwinCollection{Props: map[string]any{}, Version: 1},
		},
		// service-api §5.1
		"method-request.json": MethodRequest{MethodName: "rebootDevice", Payload: json.RawMessage(`{"delay":1}`),
			ResponseTimeoutInSeconds: ptr(15), ConnectTimeoutInSeconds: ptr(0)},
		// service-api §5.2
		"method-result.json": MethodResult{Status: 200, Payload: json.RawMessage(`{"result":"Reboot started"}`)},
		// service-api §7.3
		"job.json": Job{JobID: "job01", Type: JobScheduleDeviceMethod, Status: JobCompleted,
			QueryCondition: "deviceId IN ['d1','d2']", CreatedTime: &at, StartTime: &at, EndTime: &at,
			MaxExecutionTimeInSeconds: 3600,
			CloudToDeviceMethod:       &MethodRequest{MethodName: "rebootDevice", Payload: json.RawMessage(`null`), ResponseTimeoutInSeconds: ptr(30)},
			DeviceJobStatistics:       &JobStatistics{DeviceCount: 2, SucceededCount: 2}},
		// service-api §7.4
		"device-job.json": DeviceJob{DeviceID: "d1", JobID: "job01", JobType: JobScheduleDeviceMethod,
			Status: DeviceJobCompleted, StartTimeUTC: at, EndTimeUTC: at, CreatedDateTimeUTC: at, LastUpdatedDateTimeUTC: at,
			Outcome: &DeviceJobOutcome{DeviceMethodResponse: &MethodResult{Status: 200, Payload: json.RawMessage(`null`)}}},
		// service-api §3.7
		"bulk-entry.json": ExportImportDevice{ID: "d3", ImportMode: ImportUpdateTwin, TwinETag: "AAAAAAAAAAE=",
			Tags: map[string]any{"room": "1"}, Properties: &ImportTwinProperties{Desired: map[string]any{"x": json.Number("1")}}},
		"bulk-result.json": BulkResult{Errors: []BulkError{{DeviceID: "d1", ErrorCode: "DeviceAlreadyExists",
			ErrorStatus: "A device with ID 'd1' is already registered."}}, Warnings: []BulkWarning{}},
		// service-api §9
		"configuration.json": Configuration{ID: "chiller", SchemaVersion: "1.0", Labels: map[string]string{"team": "ops"},
			Content:         ConfigurationContent{DeviceContent: map[string]any{"properties.desired.chiller": map[string]any{"temp": json.Number("66")}}},
			TargetCondition: "tags.env = 'prod'", CreatedTimeUtc: at, LastUpdatedTimeUtc: at, Priority: 10,
			SystemMetrics: ConfigurationMetrics{Results: map[string]int64{MetricApplied: 1, MetricTargeted: 2},
				Queries: map[string]string{MetricTargeted: "select deviceId from devices where tags.env = 'prod'"}},
			Metrics: ConfigurationMetrics{Results: map[string]int64{}, Queries: map[string]string{}}, ETag: "MQ=="},
		// service-api §6.1
		"query-spec.json": QuerySpec{Query: "SELECT * FROM devices WHERE tags.location.region = 'US'"},
		// service-api §2.1, envelope A
		"error-registry.json": Errorf(DeviceNotFound, "sensor-01").RegistryEnvelope("0123456789abcdef0123456789abcdef", t0),
		// service-api §2.1, envelope B
		"error-method.json": (&Error{Code: GatewayTimeout, Message: "Timed out waiting for the response from device.", Info: map[string]string{}}).
			MethodEnvelope("0123456789abcdef0123456789abcdef", t0),
		// device-protocol §11.2
		"error-device.json": Errorf(ArgumentInvalid, "Arrays cannot contain 'null' as value").DeviceError("0123456789abcdef0123456789abcdef", t0),
	}
}

// Ensure that every wire shape marshals exactly to its golden file and
// decodes back to the same value.
func TestGolden(t *testing.T) {
	for name, v := range goldenShapes() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run go test -update): %v", err)
			}
			if !bytes.Equal(bytes.TrimSpace(want), got) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
			back := reflect.New(reflect.TypeOf(v))
			if err := json.Unmarshal(want, back.Interface()); err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			again, _ := json.MarshalIndent(back.Elem().Interface(), "", "  ")
			if !bytes.Equal(again, got) {
				t.Fatalf("round trip changed the shape:\n%s", again)
			}
		})
	}
}

// Ensure that a twin section keeps $version and $metadata apart from the
// user's properties, and leaves them out when unset.
func TestTwinCollection(t *testing.T) {
	var c TwinCollection
	if err := json.Unmarshal([]byte(`{"a":1,"$version":7,"$metadata":{"$lastUpdated":"2024-05-01T12:30:45.1234567Z","a":{"$lastUpdated":"2024-05-01T12:30:45.1234567Z"}}}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Version != 7 || c.Props["a"] != json.Number("1") || c.Metadata == nil || c.Metadata.Children["a"] == nil {
		t.Fatalf("got %+v", c)
	}
	if _, ok := c.Props[VersionKey]; ok {
		t.Fatal("$version leaked into the properties")
	}
	b, _ := json.Marshal(TwinCollection{Props: map[string]any{"x": nil}})
	if string(b) != `{"x":null}` {
		t.Fatalf("got %s", b)
	}
	if err := json.Unmarshal([]byte(`[1]`), &c); err == nil {
		t.Fatal("an array decoded as a twin collection")
	}
}

func TestTime(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{in: "0001-01-01T00:00:00", want: "0001-01-01T00:00:00"},
		{in: "0001-01-01T00:00:00Z", want: "0001-01-01T00:00:00"},
		{in: "", want: "0001-01-01T00:00:00"},
		{in: "2017-03-09T18:30:52.3167248Z", want: "2017-03-09T18:30:52.3167248Z"},
		{in: "2016-03-30T16:24:48.789Z", want: "2016-03-30T16:24:48.7890000Z"},
		{in: "2024-01-01T01:00:00+01:00", want: "2024-01-01T00:00:00.0000000Z"},
		{in: "yesterday", err: true},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if (err != nil) != tt.err {
			t.Fatalf("ParseTime(%q) error = %v, want error %v", tt.in, err, tt.err)
		}
		if err == nil && got.String() != tt.want {
			t.Fatalf("ParseTime(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		code   ErrorCode
		name   string
		status int
	}{
		{InvalidProtocolVersion, "InvalidProtocolVersion", 400},
		{ArgumentInvalid, "ArgumentInvalid", 400},
		{IotHubUnauthorizedAccess, "IotHubUnauthorizedAccess", 401},
		{DeviceNotFound, "DeviceNotFound", 404},
		{DeviceNotOnline, "DeviceNotOnline", 404},
		{DeviceAlreadyExists, "DeviceAlreadyExists", 409},
		{PreconditionFailed, "PreconditionFailed", 412},
		{ThrottlingException, "ThrottlingException", 429},
		{GatewayTimeout, "GatewayTimeout", 504},
		{ErrorCode(418000), "418000", 418},
	}
	for _, tt := range tests {
		if tt.code.String() != tt.name || tt.code.HTTPStatus() != tt.status {
			t.Errorf("%d: got %s/%d, want %s/%d", int(tt.code), tt.code, tt.code.HTTPStatus(), tt.name, tt.status)
		}
		if c, ok := ParseErrorCode(strings.ToLower(tt.name)); ok != (tt.status != 418) || (ok && c != tt.code) {
			t.Errorf("ParseErrorCode(%q) = %v, %v", tt.name, c, ok)
		}
	}
	if CodeOf(nil) != 0 || CodeOf(os.ErrNotExist) != ServerError {
		t.Fatal("CodeOf of nil or a plain error")
	}
	wrapped := wrap(Errorf(DeviceNotFound, "x"))
	if CodeOf(wrapped) != DeviceNotFound {
		t.Fatal("CodeOf does not unwrap")
	}
}

func wrap(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "context: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// Ensure that a client recovers the code and message from each envelope.
func TestParseErrorResponse(t *testing.T) {
	now := t0
	regBody, _ := json.Marshal(Errorf(DeviceAlreadyExists, "A device with ID 'x' is already registered.").RegistryEnvelope("t", now))
	methBody, _ := json.Marshal((&Error{Code: DeviceNotOnline, Message: "not online", Info: map[string]string{"timeout": "00:00:00"}}).MethodEnvelope("t", now))
	tests := []struct {
		name    string
		status  int
		header  http.Header
		body    []byte
		code    ErrorCode
		message string
		retry   time.Duration
	}{
		{"RegistryEnvelope", 409, http.Header{"Iothub-Errorcode": {"DeviceAlreadyExists"}}, regBody, DeviceAlreadyExists, "A device with ID 'x' is already registered.", 0},
		{"MethodEnvelope", 404, http.Header{"Iothub-Errorcode": {"DeviceNotOnline"}}, methBody, DeviceNotOnline, "not online", 0},
		{"NoHeader", 409, http.Header{}, regBody, DeviceAlreadyExists, "A device with ID 'x' is already registered.", 0},
		{"NotJSON", 502, nil, []byte("<html>"), ErrorCode(502000), "HTTP status 502", 0},
		{"PlainMessage", 400, http.Header{"Iothub-Errorcode": {"ArgumentInvalid"}}, []byte(`{"Message":"bad"}`), ArgumentInvalid, "bad", 0},
		{"Throttled", 429, http.Header{"Iothub-Errorcode": {"ThrottlingException"}, "Retry-After": {"3"}}, []byte(`{"Message":"slow down"}`), ThrottlingException, "slow down", 3 * time.Second},
		{"RetryAfterDate", 429, http.Header{"Retry-After": {"Wed, 21 Oct 2026 07:28:00 GMT"}}, nil, ErrorCode(429000), "HTTP status 429", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ParseErrorResponse(tt.status, tt.header, tt.body)
			if e.Code != tt.code || e.Message != tt.message || e.RetryAfter != tt.retry {
				t.Fatalf("got %v %q %v, want %v %q %v", e.Code, e.Message, e.RetryAfter, tt.code, tt.message, tt.retry)
			}
		})
	}
}

func TestValidatePatch(t *testing.T) {
	deep := `{"a":1}`
	for i := 0; i < 10; i++ {
		deep = `{"a":` + deep + `}`
	}
	tests := []struct {
		name string
		json string
		ok   bool
	}{
		{"OK", `{"rebootTime":"2024-01-01T00:00:00Z","fw":{"version":"1.0","progress":50}}`, true},
		{"NullDeletes", `{"gone":null,"p":{"q":null}}`, true},
		{"Array", `{"a":[1,"x",{"b":2}]}`, true},
		{"DepthTen", `{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}}}}}`, true},
		{"ErrDepthEleven", deep, false},
		{"ErrDollarKey", `{"$bad":1}`, false},
		{"ErrDotKey", `{"a.b":1}`, false},
		{"ErrSpaceKey", `{"a b":1}`, false},
		{"ErrControlKey", "{\"a\\u0001\":1}", false},
		{"ErrNullInArray", `{"a":[1,null]}`, false},
		{"ErrNullInObjectInArray", `{"a":[{"b":null}]}`, false},
		{"ErrLongString", `{"s":"` + strings.Repeat("x", MaxStringLength+1) + `"}`, false},
		{"ErrLongKey", `{"` + strings.Repeat("k", MaxKeyLength+1) + `":1}`, false},
		{"ErrBigInteger", `{"n":4503599627370496}`, false},
		{"ErrHugeInteger", `{"n":99999999999999999999999}`, false},
		{"BigFloat", `{"n":1.5e300}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeObject([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			err = ValidatePatch(m)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidatePatch = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && CodeOf(err) != ArgumentInvalid {
				t.Fatalf("code %v, want ArgumentInvalid", CodeOf(err))
			}
		})
	}
}

func TestSectionSize(t *testing.T) {
	m, _ := DecodeObject([]byte(`{"ab":"xyz","n":1,"b":true,"o":{"k":"v"}}`))
	// ab:2+3, n:1+8, b:1+4, o:1+(1+1)
	if got := SectionSize(m); got != 5+9+5+3 {
		t.Fatalf("SectionSize = %d", got)
	}
	big := map[string]any{"s": strings.Repeat("x", 4000)}
	for i := 0; i < 3; i++ {
		big[string(rune('a'+i))] = strings.Repeat("y", 4000)
	}
	if err := CheckSectionSize("tags", big); CodeOf(err) != ArgumentInvalid {
		t.Fatalf("8 KB tags limit not enforced: %v", err)
	}
	if err := CheckSectionSize("reported", big); err != nil {
		t.Fatalf("16 KB reported rejected: %v", err)
	}
}

func TestMethodRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  MethodRequest
		code ErrorCode
	}{
		{"OK", MethodRequest{MethodName: "rebootDevice"}, 0},
		{"OKComponent", MethodRequest{MethodName: "thermostat*reboot", ResponseTimeoutInSeconds: ptr(300), ConnectTimeoutInSeconds: ptr(300)}, 0},
		{"OKLegacyTimeout", MethodRequest{MethodName: "m", TimeoutInSeconds: ptr(10)}, 0},
		{"ErrNoName", MethodRequest{}, ArgumentNull},
		{"ErrBadName", MethodRequest{MethodName: "a/b"}, ArgumentInvalid},
		{"ErrResponseTooShort", MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: ptr(3)}, ArgumentInvalid},
		{"ErrResponseTooLong", MethodRequest{MethodName: "m", ResponseTimeoutInSeconds: ptr(301)}, ArgumentInvalid},
		{"ErrConnectNegative", MethodRequest{MethodName: "m", ConnectTimeoutInSeconds: ptr(-1)}, ArgumentInvalid},
		{"ErrPayloadTooLarge", MethodRequest{MethodName: "m", Payload: json.RawMessage(`"` + strings.Repeat("x", MaxMethodPayload) + `"`)}, MessageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CodeOf(tt.req.Validate()); got != tt.code {
				t.Fatalf("got %v, want %v", got, tt.code)
			}
		})
	}
	r, c := MethodRequest{}.Timeouts()
	if r != 30*time.Second || c != 0 {
		t.Fatalf("default timeouts %v %v", r, c)
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{
		"sensor-01": true, "a:b.c+d%e_f#g*h?i!j(k)l,m=n@o;p$q'r": true, strings.Repeat("x", 128): true,
		"": false, strings.Repeat("x", 129): false, "a/b": false, "a b": false, "é": false,
	} {
		if ValidID(id) != ok {
			t.Errorf("ValidID(%q) = %v", id, !ok)
		}
	}
}

// Ensure that AppendJSON writes what encoding/json would for a compact
// payload, so the hub can hand a device's answer on without re-encoding it.
func TestMethodResultAppendJSON(t *testing.T) {
	for _, r := range []MethodResult{
		{Status: 200, Payload: json.RawMessage(`{"result":"Reboot started"}`)},
		{Status: 404, Payload: json.RawMessage(`"not found"`)},
		{Status: -1, Payload: json.RawMessage(`[1,2,{"a":null}]`)},
		{Status: 500, Payload: json.RawMessage(`null`)},
		{Status: 0},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("AppendJSON(%+v) = %s, want %s", r, got, want)
		}
	}
}

// Ensure that twin sections with awkward property names encode as
// encoding/json would escape them and decode back to the same value.
func TestTwinCollectionKeys(t *testing.T) {
	at := NewTime(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	keys := []string{"plain", `quo"te`, `back\slash`, "<html>&", "tab\there", "ünïcode", "line\u2028sep", "a.b-c_d$e"}
	c := TwinCollection{Props: map[string]any{}, Version: 7, Metadata: &Metadata{LastUpdated: at, LastUpdatedVersion: 7, Children: map[string]*Metadata{}}}
	for i, k := range keys {
		c.Props[k] = map[string]any{k: json.Number(strconv.Itoa(i))}
		c.Metadata.Children[k] = &Metadata{LastUpdated: at, LastUpdatedVersion: int64(i),
			Children: map[string]*Metadata{k: {LastUpdated: at}}}
		want, _ := json.Marshal(k)
		if got := appendKey(nil, k); string(got) != string(want)+":" {
			t.Errorf("appendKey(%q) = %s, want %s:", k, got, want)
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back TwinCollection
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip changed the section:\n%s", b)
	}
}

// Ensure that import modes parse in any letter case, as the hub's .NET
// enum does, and that only the IfMatchETag modes need an etag.
func TestImportMode(t *testing.T) {
	tests := []struct {
		in    string
		want  ImportMode
		ok    bool
		etags bool
	}{
		{"create", ImportCreate, true, false},
		{"Update", ImportUpdate, true, false},
		{"DeleteIfMatchETag", ImportDeleteIfMatchETag, true, true},
		{"updatetwinifmatchetag", ImportUpdateTwinIfMatchETag, true, true},
		{"createOrUpdateIfMatchETag", ImportCreateOrUpdateIfMatchETag, true, true},
		{"upsert", "", false, false},
		{"", "", false, false},
	}
	for _, tt := range tests {
		got, ok := ParseImportMode(tt.in)
		if got != tt.want || ok != tt.ok || got.MatchesETag() != tt.etags {
			t.Errorf("ParseImportMode(%q) = %q, %v (etag %v)", tt.in, got, ok, got.MatchesETag())
		}
	}
	var e ExportImportDevice
	if err := json.Unmarshal([]byte(`{"id":"d","importMode":"Delete","etag":"MQ=="}`), &e); err != nil || e.ImportMode != ImportDelete || e.ETag != "MQ==" {
		t.Fatalf("decode the Node SDK's entry: %+v, %v", e, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"d","importMode":"upsert"}`), &e); err == nil {
		t.Fatal("an unknown import mode was accepted")
	}
}

// Ensure that deviceContent keys map to paths below the desired section
// and that keys elsewhere in the twin are refused.
func TestDesiredPath(t *testing.T) {
	tests := []struct {
		key  string
		want string
		ok   bool
	}{
		{"properties.desired", "[]", true},
		{"properties.desired.chiller", "[chiller]", true},
		{"properties.desired.a.b.c", "[a b c]", true},
		{"properties.desiredx", "", false},
		{"properties.reported.a", "", false},
		{"tags.env", "", false},
		{"properties.desired.a..b", "", false},
		{"properties.desired.", "", false},
	}
	for _, tt := range tests {
		got, err := DesiredPath(tt.key)
		if (err == nil) != tt.ok || (tt.ok && fmt.Sprint(got) != tt.want) {
			t.Errorf("DesiredPath(%q) = %v, %v", tt.key, got, err)
		}
	}
}

// Ensure that iothub-ack selects which outcomes get feedback.
func TestWantsFeedback(t *testing.T) {
	for _, tt := range []struct {
		ack, status string
		want        bool
	}{
		{"full", FeedbackSuccess, true}, {"full", FeedbackPurged, true},
		{"positive", FeedbackSuccess, true}, {"positive", FeedbackExpired, false},
		{"negative", FeedbackSuccess, false}, {"negative", FeedbackExpired, true},
		{"none", FeedbackSuccess, false}, {"", FeedbackPurged, false},
	} {
		if got := WantsFeedback(tt.ack, tt.status); got != tt.want {
			t.Errorf("WantsFeedback(%q, %q) = %v", tt.ack, tt.status, got)
		}
	}
}
