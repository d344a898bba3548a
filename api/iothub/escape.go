package iothub

import "strings"

// Escape percent-encodes s the way the official SDKs' strict
// encodeURIComponent does: every byte except A–Z a–z 0–9 - _ . ~ becomes %XX
// with upper-case hex. SAS resources (device-protocol §3.2) and topic
// property bags (device-protocol §7.1) are written with it.
func Escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
