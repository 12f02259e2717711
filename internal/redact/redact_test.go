package redact

import (
	"strings"
	"testing"
)

// Every credential form pgx accepts is masked, and nothing else changes.
func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"postgres://drover:s3cret@db:5432/drover":                          "postgres://drover:xxxxx@db:5432/drover",
		"postgresql://drover:s3cret@db/drover?sslmode=disable":             "postgresql://drover:xxxxx@db/drover?sslmode=disable",
		"postgres://drover@db/drover?sslmode=disable":                      "postgres://drover@db/drover?sslmode=disable",
		"postgres://db/drover?password=s3cret&user=drover":                 "postgres://db/drover?password=xxxxx&user=drover",
		"postgres://db/drover?user=drover&password=s3cret":                 "postgres://db/drover?user=drover&password=xxxxx",
		"postgres://db/drover?sslmode=verify-full&sslpassword=s3cret":      "postgres://db/drover?sslmode=verify-full&sslpassword=xxxxx",
		"postgres://u:p1@db/x?PassWord=s3cret#frag":                        "postgres://u:xxxxx@db/x?PassWord=xxxxx#frag",
		"postgres://drover:s3cret@db:bad port/x":                           "postgres://drover:xxxxx@db:bad port/x",
		"postgres://drover:s3c@ret@db/x":                                   "postgres://drover:xxxxx@db/x",
		"host=db user=drover password=s3cret dbname=drover":                "host=db user=drover password=xxxxx dbname=drover",
		"host=db password = s3cret sslpassword=k3y":                        "host=db password = xxxxx sslpassword=xxxxx",
		`host=db password='s3 c\'ret' dbname=x`:                            "host=db password=xxxxx dbname=x",
		"password=s3cret":                                                  "password=xxxxx",
		"sqlite://drover.db":                                               "sqlite://drover.db",
		"drover.db":                                                        "drover.db",
		"":                                                                 "",
		"host=db user=drover dbname=drover_password_store sslmode=require": "host=db user=drover dbname=drover_password_store sslmode=require",
	}
	for in, want := range tests {
		got := DatabaseURL(in)
		if got != want {
			t.Errorf("DatabaseURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "s3") || strings.Contains(got, "k3y") {
			t.Errorf("DatabaseURL(%q) = %q leaks a credential", in, got)
		}
	}
}

// A driver error that echoes a credential gets it masked, in the forms it
// was written and percent-decoded.
func TestText(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, text string }{
		{"postgres://u:pa%40ss@h/db", "connect to u:pa@ss failed (pa%40ss)"},
		{"postgres://h/db?password=s3cret&sslpassword=k3y", "bad password s3cret, key k3y"},
		{`host=h password='it\'s' sslpassword=k3y`, "password it's and k3y refused"},
	}
	for _, tt := range tests {
		got := Text(tt.text, tt.url)
		for _, leak := range []string{"pa@ss", "pa%40ss", "s3cret", "k3y", "it's"} {
			if strings.Contains(got, leak) {
				t.Errorf("Text(%q, %q) = %q leaks %q", tt.text, tt.url, got, leak)
			}
		}
	}
	if got := Text("nothing secret", "sqlite://drover.db"); got != "nothing secret" {
		t.Errorf("Text changed a text without secrets: %q", got)
	}
}
