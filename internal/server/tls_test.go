package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/droverhq/drover/internal/client"
	"github.com/droverhq/drover/internal/config"
	"github.com/droverhq/drover/internal/core"
)

// testCA makes a CA and issues leaf certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "drover test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a leaf for 127.0.0.1 with the given serial to cert/key.
func (ca *testCA) issue(t *testing.T, serial int64, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "drover"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestServeTLSWithReload(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certPath, keyPath, caPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.pem")
	ca.issue(t, 100, certPath, keyPath)
	if err := os.WriteFile(caPath, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Database = "sqlite://" + filepath.Join(dir, "drover.db")
	cfg.TLS = config.TLSConfig{CertFile: certPath, KeyFile: keyPath}
	cfg.Auth.OperatorToken = "op"
	cfg.Pools["default"].Max = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, Options{Listener: ln, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: core.SystemClock{}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %s", srv.URL())
	}
	// An agent's client with --ca-file trusts it; one without does not.
	hc, err := client.CAFileHTTPClient(caPath)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(srv.URL(), "op", client.WithHTTPClient(hc))
	if err := c.Health(ctx); err != nil {
		t.Fatalf("health over TLS with the CA: %v", err)
	}
	plain, _ := client.New(srv.URL(), "op")
	if err := plain.Health(ctx); err == nil {
		t.Error("a client without the private CA trusted the server")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	if s := servedSerial(t, srv.Addr(), roots); s != 100 {
		t.Fatalf("serial %d, want 100", s)
	}
	// SIGHUP path: new files, ReloadTLS.
	ca.issue(t, 200, certPath, keyPath)
	if err := srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if s := servedSerial(t, srv.Addr(), roots); s != 200 {
		t.Errorf("after reload: serial %d, want 200", s)
	}
	// A broken file: the reload fails and the old certificate stays.
	if err := os.WriteFile(keyPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadTLS(); err == nil {
		t.Error("a broken key reloaded")
	}
	if s := servedSerial(t, srv.Addr(), roots); s != 200 {
		t.Errorf("after a failed reload: serial %d, want 200", s)
	}
}

func TestCertReloaderPicksUpChangedFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	ca.issue(t, 1, certPath, keyPath)
	clock := core.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r, err := newCertReloader(certPath, keyPath, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 {
		c, err := r.getCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := x509.ParseCertificate(c.Certificate[0])
		return x.SerialNumber.Int64()
	}
	if serial() != 1 {
		t.Fatal("first certificate")
	}
	ca.issue(t, 2, certPath, keyPath)
	future := time.Now().Add(time.Minute)
	_ = os.Chtimes(certPath, future, future)
	_ = os.Chtimes(keyPath, future, future)
	if serial() != 1 {
		t.Error("files checked again within a second")
	}
	clock.Advance(2 * time.Second)
	if serial() != 2 {
		t.Error("changed files not picked up")
	}
}
