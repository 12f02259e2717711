package outputs

import (
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	good := []string{"video.mp4", "tile-001.png", "résumé.pdf", "a b.txt", strings.Repeat("x", 255)}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	bad := map[string]string{
		"":                       "empty",
		"../x":                   "path separator",
		"/etc/passwd":            "path separator",
		`a\b`:                    "path separator",
		"a\x00b":                 "NUL",
		".":                      "not a file name",
		"..":                     "not a file name",
		".hidden":                "starting with '.'",
		"a\nb":                   "control character",
		"\xff":                   "UTF-8",
		strings.Repeat("x", 256): "the limit is 255",
	}
	for n, want := range bad {
		err := ValidateName(n)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", n, err, want)
		}
	}
}

func TestValidateManifestLimits(t *testing.T) {
	sum := strings.Repeat("a", 64)
	e := func(name string, size int64) Entry {
		return Entry{Name: name, Size: size, SHA256: sum, ContentType: "image/png"}
	}
	l := Limits{MaxFileSize: 100, MaxFiles: 2}
	cases := map[string][]Entry{
		`output "big.png": 101 bytes; the limit is 100 bytes per file`: {e("big.png", 101)},
		"3 outputs; the limit is 2 files per task":                     {e("a", 1), e("b", 1), e("c", 1)},
		`output "a": listed twice`:                                     {e("a", 1), e("a", 1)},
		"negative size":                                                {e("a", -1)},
	}
	for want, entries := range cases {
		if err := ValidateManifest(entries, l); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", entries, err, want)
		}
	}
	if err := ValidateManifest([]Entry{e("a", 100), e("b", 0)}, l); err != nil {
		t.Errorf("valid manifest: %v", err)
	}
}

func TestSigner(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	g := Grant{Method: "PUT", Key: "tasks/a/b/c", Task: "a", Lease: "b", Size: 7, ContentType: "text/plain", Expires: now.Add(time.Minute).Unix()}
	tok := s.Sign(g)
	got, err := s.Verify(tok, now)
	if err != nil || got != g {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, g)
	}
	if _, err := s.Verify(tok, now.Add(time.Minute)); err != ErrExpired {
		t.Errorf("expired: %v", err)
	}
	other, _ := NewSigner([]byte(strings.Repeat("o", 32)))
	if _, err := other.Verify(tok, now); err != ErrBadSignature {
		t.Errorf("other key: %v", err)
	}
	g2 := g
	g2.Key = "tasks/x/b/c"
	forged := strings.SplitN(s.Sign(g2), ".", 2)[0] + "." + strings.SplitN(tok, ".", 2)[1]
	if _, err := s.Verify(forged, now); err != ErrBadSignature {
		t.Errorf("forged payload: %v", err)
	}
	for _, junk := range []string{"", ".", "abc", "abc.def", tok + "x"} {
		if _, err := s.Verify(junk, now); err == nil {
			t.Errorf("%q verified", junk)
		}
	}
}
