package eventhubs

import (
	"regexp"
	"testing"
)

// Ensure that the selectors the clients send parse to their positions and
// render back as themselves, and that anything else is an error.
func TestParseSelector(t *testing.T) {
	tests := []struct {
		in   string
		want Position
	}{
		{"amqp.annotation.x-opt-offset > '-1'", Position{Field: ByOffset, Value: -1}},
		{"amqp.annotation.x-opt-offset > '@latest'", Position{Field: ByOffset, Latest: true}},
		{"amqp.annotation.x-opt-offset >= '42'", Position{Field: ByOffset, Inclusive: true, Value: 42}},
		{"amqp.annotation.x-opt-sequence-number > '7'", Position{Field: BySequence, Value: 7}},
		{"amqp.annotation.x-opt-enqueued-time > '1700000000000'", Position{Field: ByEnqueuedTime, Value: 1700000000000}},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSelector(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
	for _, bad := range []string{"", "amqp.annotation.x-opt-offset = '1'", "amqp.annotation.x-opt-sequence-number > 'x'",
		"amqp.annotation.x-opt-foo > '1'", "amqp.annotation.x-opt-offset > 1", "x-opt-offset > '1' OR 1=1"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) parsed", bad)
		}
	}
}

// FuzzParseSelector checks that a parsed selector renders to one that
// parses to the same position.
func FuzzParseSelector(f *testing.F) {
	f.Add("amqp.annotation.x-opt-offset > '-1'")
	f.Add("amqp.annotation.x-opt-sequence-number >= '5'")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSelector(s)
		if err != nil {
			return
		}
		q, err := ParseSelector(p.String())
		if err != nil || q != p {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, p, p.String(), q, err)
		}
	})
}

// Ensure that receiver addresses split into hub, group and partition, in
// either case.
func TestParsePartitionAddress(t *testing.T) {
	a, ok := ParsePartitionAddress([]string{"hub", "consumergroups", "$Default", "Partitions", "3"})
	if !ok || a != (PartitionAddress{"hub", "$Default", "3"}) {
		t.Errorf("%+v %v", a, ok)
	}
	if _, ok := ParsePartitionAddress([]string{"hub", "Partitions", "3"}); ok {
		t.Error("a sender's address parsed as a receiver's")
	}
}

func TestConnectionStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{ConnectionString("localhost", 5671, "service", "k=", "hub"), "Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey=k=;EntityPath=hub"},
		{ConnectionString("localhost", 15671, "service", "k=", "hub"), "Endpoint=sb://localhost:15671/;SharedAccessKeyName=service;SharedAccessKey=k=;EntityPath=hub"},
		{DevelopmentConnectionString("localhost", 5672, "service", "k=", "hub"), "Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey=k=;EntityPath=hub;UseDevelopmentEmulator=true"},
		{DevelopmentConnectionString("localhost", 5671, "service", "k=", "hub"), "Endpoint=sb://localhost:5671/;SharedAccessKeyName=service;SharedAccessKey=k=;EntityPath=hub;UseDevelopmentEmulator=true"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got  %s\nwant %s", tt.got, tt.want)
		}
	}
}

// The clients' own patterns (next-wave-protocols §1.3) read the event
// hub's name from what RedirectAddress writes.
func TestRedirectAddress(t *testing.T) {
	for _, rest := range []string{"$management", "ConsumerGroups/$Default/Partitions/0"} {
		addr := RedirectAddress("localhost", 5671, "myhub", rest)
		js := regexp.MustCompile(`(?i):\d+\/(.*)\/\$management`)
		py := regexp.MustCompile(`:\d+\/.*/ConsumerGroups`)
		if rest == "$management" && js.FindStringSubmatch(addr)[1] != "myhub" {
			t.Errorf("%s: the JavaScript pattern does not find the event hub", addr)
		}
		if rest != "$management" && !py.MatchString(addr) {
			t.Errorf("%s: the Python pattern does not match", addr)
		}
		if name, err := ParseRedirectAddress(addr); err != nil || name != "myhub" {
			t.Errorf("ParseRedirectAddress(%s) = %q, %v", addr, name, err)
		}
	}
	for _, bad := range []string{"", "amqps://host/myhub/$management", "sb://host:1/x", "amqps://host:1/"} {
		if name, err := ParseRedirectAddress(bad); err == nil {
			t.Errorf("ParseRedirectAddress(%q) = %q, want an error", bad, name)
		}
	}
}
