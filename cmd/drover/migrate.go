package main

import (
	"cmp"
	"fmt"
	"os"

	"github.com/droverhq/drover/internal/store/dbopen"
	"github.com/spf13/cobra"
)

// databaseURL returns the --db flag's value, else $DROVER_DATABASE, else
// the default SQLite file.
func databaseURL(flag string) string {
	return cmp.Or(flag, os.Getenv("DROVER_DATABASE"), dbopen.DefaultURL)
}

var migrateCmd = &cobra.Command{
	Use:   "migrate",
	Short: "Apply pending database migrations and list them",
	Long: `Apply the embedded schema migrations that the database does not have yet,
each in its own transaction, and print their names. Safe to run again: a
database that is up to date applies nothing. On PostgreSQL an advisory lock
keeps several replicas from migrating at once.

The database is --db, else $DROVER_DATABASE, else sqlite://drover.db.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		dbFlag, _ := cmd.Flags().GetString("db")
		url := databaseURL(dbFlag)
		st, err := dbopen.Open(cmd.Context(), url, false)
		if err != nil {
			return err
		}
		defer st.Close()
		applied, err := st.Migrate(cmd.Context())
		if err != nil {
			return fmt.Errorf("migrate %s: %w", dbopen.Redact(url), err)
		}
		out := cmd.OutOrStdout()
		if len(applied) == 0 {
			fmt.Fprintf(out, "%s is up to date\n", dbopen.Redact(url))
			return nil
		}
		for _, name := range applied {
			fmt.Fprintf(out, "applied %s\n", name)
		}
		fmt.Fprintf(out, "%d migrations applied to %s\n", len(applied), dbopen.Redact(url))
		return nil
	},
}

func init() {
	migrateCmd.Flags().String("db", "", "database URL: sqlite://PATH or postgres://USER@HOST/DB (default $DROVER_DATABASE, else sqlite://drover.db)")
	rootCmd.AddCommand(migrateCmd)
}
