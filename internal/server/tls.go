package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate in certFile/keyFile and reads it
// again when either file changes (checked at most once per
// reloadCheckEvery, on a handshake) or on Reload (SIGHUP). A reload that
// fails keeps the certificate in use.
type certReloader struct {
	certFile, keyFile string
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	checkedAt time.Time
}

const reloadCheckEvery = time.Second

func newCertReloader(certFile, keyFile string, now func() time.Time) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, now: now}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again.
func (r *certReloader) Reload() error {
	cm, km, err := r.modTimes()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cert, r.certMod, r.keyMod = &cert, cm, km
	return nil
}

func (r *certReloader) modTimes() (time.Time, time.Time, error) {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("tls.cert_file: %w", err)
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("tls.key_file: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	now := r.now()
	check := now.Sub(r.checkedAt) >= reloadCheckEvery
	if check {
		r.checkedAt = now
	}
	cm0, km0 := r.certMod, r.keyMod
	r.mu.Unlock()
	if check {
		if cm, km, err := r.modTimes(); err == nil && (!cm.Equal(cm0) || !km.Equal(km0)) {
			_ = r.Reload() // on failure the old certificate stays
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}

func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.getCertificate, MinVersion: tls.VersionTLS12}
}
