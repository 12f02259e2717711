package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the signature of a delivery.
const SignatureHeader = "Drover-Signature"

// Sign returns the Drover-Signature value of body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under secret>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature is returned by Verify for a missing, malformed, wrong or
// stale signature.
var ErrBadSignature = errors.New("bad webhook signature")

// Verify checks a Drover-Signature header value against body: the HMAC must
// match (compared in constant time) and its timestamp must be within
// tolerance of now (0 skips the age check). Receivers use it, and so do
// the tests.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("%w: want t=<unix>,v1=<hex>", ErrBadSignature)
	}
	if !hmac.Equal([]byte(sig), []byte(mac(secret, ts, body))) {
		return fmt.Errorf("%w: signature does not match", ErrBadSignature)
	}
	if tolerance > 0 {
		if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
			return fmt.Errorf("%w: timestamp is %s away from now; the tolerance is %s", ErrBadSignature, age.Round(time.Second), tolerance)
		}
	}
	return nil
}
