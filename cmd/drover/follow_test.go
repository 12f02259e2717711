package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 10, 15, 19, 20, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"90m":                       now.Add(-90 * time.Minute),
		"2h":                        now.Add(-2 * time.Hour),
		"2025-10-15T19:00:00Z":      time.Date(2025, 10, 15, 19, 0, 0, 0, time.UTC),
		"2025-10-15T21:00:00+02:00": time.Date(2025, 10, 15, 19, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "2025-10-15 19:00"} {
		_, err := parseSince(bad, now)
		if err == nil || !strings.Contains(err.Error(), "a duration such as 90m") || !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("parseSince(%q) error = %v; want one naming both formats", bad, err)
		}
	}
}
