// Command drover is Drover's single binary: the server, the worker agent, the
// operator CLI, the simulator and the benchmarks. This package only parses
// flags and wires packages together; every subcommand lives in its own file
// and registers itself with rootCmd in an init function.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var rootCmd = &cobra.Command{
	Use:           "drover",
	Short:         "Drover runs GPU work on rented GPU machines and keeps the fleet the right size",
	SilenceUsage:  true,
	SilenceErrors: true,
	Version:       version,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "drover:", err)
		code := 1
		// An error may carry its own exit status (simulate: 2 for bad input).
		if ec, ok := errors.AsType[interface {
			error
			ExitCode() int
		}](err); ok {
			code = ec.ExitCode()
		}
		os.Exit(code)
	}
}
