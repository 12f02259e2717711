package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// newTaskOutputsCmd is `drover tasks outputs ID [--download DIR]`.
func newTaskOutputsCmd() *cobra.Command {
	var (
		dir    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "outputs ID",
		Short: "List a task's outputs, or download them with --download DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newCLIClient(cmd)
			if err != nil {
				return err
			}
			id, err := parseUUIDArg("task id", args[0])
			if err != nil {
				return err
			}
			res, err := c.Outputs(cmd.Context(), id)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if dir != "" {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return fmt.Errorf("create %s: %w", dir, err)
				}
				for _, o := range res.Outputs {
					p, err := c.DownloadOutput(cmd.Context(), id, o.Name, dir)
					if err != nil {
						return err
					}
					if got, err := fileSHA256(p); err != nil || got != o.SHA256 {
						return fmt.Errorf("output %q: downloaded SHA-256 %s does not match the manifest's %s (%v)", o.Name, got, o.SHA256, err)
					}
					fmt.Fprintf(out, "%s\t%d bytes\tsha256 ok\n", p, o.Size)
				}
				return nil
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			if len(res.Outputs) == 0 {
				fmt.Fprintf(out, "task %s (%s) has no outputs\n", id, res.State)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSIZE\tTYPE\tSHA256\tEXPIRES")
			for _, o := range res.Outputs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", o.Name, o.Size, o.ContentType, o.SHA256[:16]+"…", o.ExpiresAt.Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "download", "", "save every output into this directory (checking each SHA-256)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addClientFlags(cmd)
	return cmd
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
