package config

import (
	"fmt"
	"os"
)

// TLSConfig makes `drover serve` speak HTTPS. Both files are PEM; they are
// read again on SIGHUP and when they change on disk (certificate renewal
// needs no restart).
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

func (c *Config) validateTLS(ck *checker) {
	t := c.TLS
	if !t.Enabled() {
		return
	}
	if t.CertFile == "" || t.KeyFile == "" {
		ck.addf("tls", "needs both cert_file and key_file (got cert_file %q, key_file %q)", t.CertFile, t.KeyFile)
		return
	}
	for field, path := range map[string]string{"tls.cert_file": t.CertFile, "tls.key_file": t.KeyFile} {
		if _, err := os.Stat(path); err != nil {
			ck.addf(field, "cannot read %s: %v", path, errShort(err))
		}
	}
}

func errShort(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return fmt.Sprint(err)
}
