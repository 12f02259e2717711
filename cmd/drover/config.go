package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/droverhq/drover/internal/config"
	"github.com/spf13/cobra"
)

func init() {
	configCmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect Drover's configuration",
	}
	var path string
	checkCmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print it with secrets masked",
		Long: `Load the configuration (--config FILE, else $DROVER_CONFIG, else the
built-in defaults), apply the DROVER_… environment overrides, read the secret
files it names, and validate it. On success print the effective configuration
as YAML with every secret masked. On failure print one line per problem and
exit 1. See docs/configuration.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				path = os.Getenv("DROVER_CONFIG")
			}
			cfg, err := config.Load(path, os.Getenv)
			if err != nil {
				if ve, ok := errors.AsType[*config.ValidationError](err); ok {
					name := path
					if name == "" {
						name = "(defaults)"
					}
					return fmt.Errorf("config %s has %d problem(s):\n  %s", name, len(ve.Problems), strings.Join(ve.Problems, "\n  "))
				}
				return err
			}
			for _, w := range cfg.Warnings() {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
			}
			out, err := cfg.Describe(os.Getenv)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	checkCmd.Flags().StringVar(&path, "config", "", "path to drover.yaml (default: $DROVER_CONFIG, else built-in defaults)")
	configCmd.AddCommand(checkCmd)
	rootCmd.AddCommand(configCmd)
}
