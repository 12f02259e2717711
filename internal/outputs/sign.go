package outputs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
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
type Signer struct {
	secret []byte
	macs   sync.Pool // keyed HMAC states, reset between uses
}

// NewSigner returns a signer; secret must be at least 32 bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("outputs: signing secret is %d bytes; at least 32 are required", len(secret))
	}
	s := &Signer{secret: append([]byte(nil), secret...)}
	s.macs.New = func() any { return hmac.New(sha256.New, s.secret) }
	return s, nil
}

// A token is base64url(payload || MAC), where MAC is the first macSize
// bytes of the HMAC-SHA256 of the payload (128 bits, the least RFC 2104
// allows for SHA-256), and the payload is binary:
//
//	tokenVersion, flags, varint Expires, varint Size, then strings as
//	uvarint length and bytes: Method, ContentType, then Task and Lease
//	(16 bytes each when flagUUIDs), then the name when flagDerivedKey
//	(Key is Key(Task, Lease, name)), else Key.
//
// A thousand grants (one task's image tiles) sign, travel as JSON and
// verify in a third of the time and bytes of the first format,
// base64url(JSON) "." base64url(HMAC), which Verify still accepts so
// that URLs granted before an upgrade stay valid until they expire.
const (
	tokenVersion   = 2
	macSize        = 16
	flagUUIDs      = 1 << 0
	flagDerivedKey = 1 << 1
	maxTokenString = 4096
)

// Sign returns the token of g.
func (s *Signer) Sign(g Grant) string {
	var flags byte
	task, errT := uuid.Parse(g.Task)
	lease, errL := uuid.Parse(g.Lease)
	if errT == nil && errL == nil && task.String() == g.Task && lease.String() == g.Lease {
		flags |= flagUUIDs
	}
	name, derived := strings.CutPrefix(g.Key, Key(g.Task, g.Lease, ""))
	if derived && flags&flagUUIDs != 0 {
		flags |= flagDerivedKey
	}
	b := make([]byte, 0, 64+len(g.Method)+len(g.ContentType)+len(g.Key)+macSize)
	b = append(b, tokenVersion, flags)
	b = binary.AppendVarint(b, g.Expires)
	b = binary.AppendVarint(b, g.Size)
	b = appendString(b, g.Method)
	b = appendString(b, g.ContentType)
	if flags&flagUUIDs != 0 {
		b = append(b, task[:]...)
		b = append(b, lease[:]...)
	} else {
		b = appendString(b, g.Task)
		b = appendString(b, g.Lease)
	}
	if flags&flagDerivedKey != 0 {
		b = appendString(b, name)
	} else {
		b = appendString(b, g.Key)
	}
	b = s.appendMAC(b, b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func appendString(b []byte, v string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// appendMAC appends the first macSize bytes of the HMAC of payload to b.
func (s *Signer) appendMAC(b, payload []byte) []byte {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(payload)
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	s.macs.Put(m)
	return append(b, sum[:macSize]...)
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("signature does not match")
	ErrExpired      = errors.New("signed URL expired")
)

// Verify checks token's signature and expiry at now and returns its grant.
func (s *Signer) Verify(token string, now time.Time) (Grant, error) {
	if len(token) > maxTokenString {
		return Grant{}, ErrBadSignature
	}
	var g Grant
	var err error
	if strings.Contains(token, ".") {
		g, err = s.verifyJSON(token)
	} else {
		g, err = s.verifyBinary(token)
	}
	if err != nil {
		return Grant{}, err
	}
	if now.Unix() >= g.Expires {
		return Grant{}, ErrExpired
	}
	return g, nil
}

func (s *Signer) verifyBinary(token string) (Grant, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 2+macSize {
		return Grant{}, ErrBadSignature
	}
	payload := raw[:len(raw)-macSize]
	var want [macSize]byte
	if !hmac.Equal(s.appendMAC(want[:0], payload), raw[len(raw)-macSize:]) {
		return Grant{}, ErrBadSignature
	}
	// Signed by this server, so well formed; the reader still checks
	// every length, as a secret shared with an older build might not.
	r := tokenReader{b: payload[2:]}
	if payload[0] != tokenVersion {
		return Grant{}, ErrBadSignature
	}
	flags := payload[1]
	g := Grant{Expires: r.varint(), Size: r.varint(), Method: r.string(), ContentType: r.string()}
	if flags&flagUUIDs != 0 {
		g.Task, g.Lease = r.uuid(), r.uuid()
	} else {
		g.Task, g.Lease = r.string(), r.string()
	}
	if g.Key = r.string(); flags&flagDerivedKey != 0 {
		g.Key = Key(g.Task, g.Lease, g.Key)
	}
	if r.bad || len(r.b) != 0 {
		return Grant{}, ErrBadSignature
	}
	return g, nil
}

// verifyJSON verifies a token of the first format.
func (s *Signer) verifyJSON(token string) (Grant, error) {
	p, sig, _ := strings.Cut(token, ".")
	got, err := base64.RawURLEncoding.DecodeString(sig)
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(p))
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
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
	return g, nil
}

// tokenReader reads a token's payload; bad is set (and zero values
// returned) once anything is short or malformed.
type tokenReader struct {
	b   []byte
	bad bool
}

func (r *tokenReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *tokenReader) string() string {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.bad = true
		return ""
	}
	v := string(r.b[k : k+int(n)])
	r.b = r.b[k+int(n):]
	return v
}

func (r *tokenReader) uuid() string {
	if len(r.b) < 16 {
		r.bad = true
		return ""
	}
	u := uuid.UUID(r.b[:16])
	r.b = r.b[16:]
	return u.String()
}
