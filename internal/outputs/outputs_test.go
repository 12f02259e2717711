package outputs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
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
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw { // any changed byte, payload or MAC, is refused
		forged := append([]byte(nil), raw...)
		forged[i] ^= 0x20
		if _, err := s.Verify(base64.RawURLEncoding.EncodeToString(forged), now); err != ErrBadSignature {
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	for n := range raw { // and so is any truncation
		if _, err := s.Verify(base64.RawURLEncoding.EncodeToString(raw[:n]), now); err != ErrBadSignature {
			t.Fatalf("first %d bytes: %v", n, err)
		}
	}
	for _, junk := range []string{"", ".", "abc", "abc.def", tok + "x", strings.Repeat("A", 5000)} {
		if _, err := s.Verify(junk, now); err == nil {
			t.Errorf("%q verified", junk)
		}
	}
}

// The task and lease of the signer tests and benchmark.
const (
	task  = "0b5c1a52-9a55-4f3c-8a43-2f0e6b3f7a10"
	lease = "7d6f3e2a-1c4b-4e8f-9a0d-5b6c7e8f9a0b"
)

// newTestSigner returns a signer, its secret and the time the tests run at.
func newTestSigner(tb testing.TB) (*Signer, []byte, time.Time) {
	tb.Helper()
	secret := []byte(strings.Repeat("k", 32))
	s, err := NewSigner(secret)
	if err != nil {
		tb.Fatal(err)
	}
	return s, secret, time.Unix(1_800_000_000, 0)
}

// firstFormat signs g in the first token format: base64url(JSON) "."
// base64url(HMAC-SHA256).
func firstFormat(secret []byte, g Grant) string {
	body, _ := json.Marshal(g)
	p := base64.RawURLEncoding.EncodeToString(body)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestSignerForms covers the grants Drover signs (UUID task and lease, the
// key derived from them) and the tokens of the first format, which stay
// valid until they expire.
func TestSignerForms(t *testing.T) {
	s, secret, now := newTestSigner(t)
	exp := now.Add(time.Hour).Unix()
	grants := []Grant{
		{Method: "PUT", Key: Key(task, lease, "tile-0001.png"), Task: task, Lease: lease, Size: 102400, ContentType: "image/png", Expires: exp},
		{Method: "PUT", Key: "elsewhere/x.bin", Task: task, Lease: lease, Size: 0, Expires: exp},
		{Method: "GET", Key: Key(task, lease, "résumé.pdf"), Task: strings.ToUpper(task), Lease: lease, Expires: exp},
	}
	for _, g := range grants {
		tok := s.Sign(g)
		if got, err := s.Verify(tok, now); err != nil || got != g {
			t.Errorf("Verify(Sign(%+v)) = %+v, %v", g, got, err)
		}
	}
	if tok := s.Sign(grants[0]); len(tok) > 120 {
		t.Errorf("an upload token of %d characters: %s", len(tok), tok)
	}

	old := firstFormat(secret, grants[0])
	p, _, _ := strings.Cut(old, ".")
	if got, err := s.Verify(old, now); err != nil || got != grants[0] {
		t.Errorf("first-format token: %+v, %v", got, err)
	}
	if _, err := s.Verify(old, now.Add(2*time.Hour)); err != ErrExpired {
		t.Errorf("expired first-format token: %v", err)
	}
	if _, err := s.Verify(p+"."+base64.RawURLEncoding.EncodeToString(make([]byte, 32)), now); err != ErrBadSignature {
		t.Errorf("first-format token with a wrong MAC: %v", err)
	}
}

// BenchmarkSigner signs and verifies one upload grant, in the current
// format and (first-format/) the first one.
//
//	go test -run '^$' -bench BenchmarkSigner ./internal/outputs
func BenchmarkSigner(b *testing.B) {
	s, secret, now := newTestSigner(b)
	g := Grant{Method: "PUT", Key: Key(task, lease, "tile-0001.png"), Task: task, Lease: lease, Size: 102400, ContentType: "image/png", Expires: now.Add(time.Hour).Unix()}
	b.Run("current", func(b *testing.B) {
		var n int
		for b.Loop() {
			tok := s.Sign(g)
			n = len(tok)
			if _, err := s.Verify(tok, now); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "token-bytes")
	})
	b.Run("first-format", func(b *testing.B) {
		var n int
		for b.Loop() {
			tok := firstFormat(secret, g)
			n = len(tok)
			if _, err := s.Verify(tok, now); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "token-bytes")
	})
}
