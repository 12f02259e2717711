package server

import (
	"strings"
	"testing"
)

// On PostgreSQL no operator token is generated (replicas would each mint
// their own); on SQLite one is.
func TestCheckTokenGeneration(t *testing.T) {
	err := CheckTokenGeneration("postgres://drover:pw@db/drover", "operator.token")
	if err == nil || !strings.Contains(err.Error(), "DROVER_OPERATOR_TOKEN") || strings.Contains(err.Error(), "pw@") {
		t.Fatalf("postgres: err = %v, want a refusal naming DROVER_OPERATOR_TOKEN without the URL", err)
	}
	if err := CheckTokenGeneration("sqlite://drover.db", "operator.token"); err != nil {
		t.Fatalf("sqlite: %v", err)
	}
}
