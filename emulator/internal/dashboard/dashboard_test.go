package dashboard

import "testing"

// Ensure that the session is served to requests addressed to this
// machine or the hub's names only: a DNS name an attacker rebinds to
// 127.0.0.1 arrives with its own Host.
func TestLocalHost(t *testing.T) {
	names := []string{"myhub.local", "emulator"}
	tests := []struct {
		host string
		want bool
	}{
		{"localhost:8080", true},
		{"LOCALHOST", true},
		{"localhost.:8080", true},
		{"dashboard.localhost:8080", true},
		{"127.0.0.1:8080", true},
		{"127.8.9.10", true},
		{"[::1]:8080", true},
		{"myhub.local:8080", true},
		{"Emulator", true},
		{"attacker.example:8080", false},
		{"localhost.attacker.example", false},
		{"10.0.0.5:8080", false},
		{"[::]:8080", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := localHost(tt.host, names); got != tt.want {
			t.Errorf("localHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}
