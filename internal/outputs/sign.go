package outputs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Grant is what a signed URL of the embedded store allows: one method on
// one object, until Expires. An upload grant also binds the task, the
// lease, the exact size and the content type.
type Grant struct {
	Method      string `json:"m"`
	Key         string `json:"k"`
	Task        string `json:"t,omitempty"`
	Lease       string `json:"l,omitempty"`
	Size        int64  `json:"s,omitempty"`
	ContentType string `json:"c,omitempty"`
	Expires     int64  `json:"e"` // unix seconds
}

// Signer signs and verifies grants with HMAC-SHA256 under a server secret.
type Signer struct{ secret []byte }

// NewSigner returns a signer; secret must be at least 32 bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("outputs: signing secret is %d bytes; at least 32 are required", len(secret))
	}
	return &Signer{secret: append([]byte(nil), secret...)}, nil
}

// Sign returns the token of g: base64url(JSON) "." base64url(HMAC).
func (s *Signer) Sign(g Grant) string {
	body, _ := json.Marshal(g)
	p := base64.RawURLEncoding.EncodeToString(body)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p))
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("signature does not match")
	ErrExpired      = errors.New("signed URL expired")
)

// Verify checks token's signature and expiry at now and returns its grant.
func (s *Signer) Verify(token string, now time.Time) (Grant, error) {
	p, sig, ok := strings.Cut(token, ".")
	if !ok {
		return Grant{}, ErrBadSignature
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(p)) {
		return Grant{}, ErrBadSignature
	}
	body, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Grant{}, ErrBadSignature
	}
	var g Grant
	if err := json.Unmarshal(body, &g); err != nil {
		return Grant{}, ErrBadSignature
	}
	if now.Unix() >= g.Expires {
		return Grant{}, ErrExpired
	}
	return g, nil
}
