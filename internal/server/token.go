package server

import (
	"fmt"

	"github.com/droverhq/drover/internal/store/dbopen"
)

// CheckTokenGeneration refuses to generate an operator token for a
// PostgreSQL database: several replicas share it, and each would mint its
// own token and refuse the others'. tokPath is the file that was looked
// for.
func CheckTokenGeneration(dbURL, tokPath string) error {
	backend, _, err := dbopen.Parse(dbURL)
	if err != nil || backend != "postgres" {
		return nil
	}
	return fmt.Errorf("auth: no operator token: on PostgreSQL every replica must use the same one, so none is generated; "+
		"set DROVER_OPERATOR_TOKEN, or auth.operator_token_file to a file holding it (looked for %s)", tokPath)
}
