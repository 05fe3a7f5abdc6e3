package provider

import (
	"strings"
	"testing"
)

func TestSafeMessage(t *testing.T) {
	cases := []struct{ msg, want string }{
		{"authorization required", "authorization required"},
		{"bad key hunter2 given", ""}, // a known secret
		{"invalid key 0123456789abcdef0123456789abcdef-aaaa", ""},
		{"line\nbreak", "line break"},
		{strings.Repeat("a", 250), strings.Repeat("a", 200)},
	}
	for _, c := range cases {
		if got := SafeMessage(c.msg, "hunter2", ""); got != c.want {
			t.Errorf("SafeMessage(%q) = %q, want %q", c.msg, got, c.want)
		}
	}
}
