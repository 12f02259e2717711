package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The user docs are self-contained: they cite no document that is not in
// the repository (DESIGN.md lives elsewhere), every relative link resolves,
// and the documented default of providers.local.dir is the code's.
func TestDocsSelfContained(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	files = append(files, filepath.Join(root, "README.md"))
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, bad := range []string{"DESIGN.md", "DESIGN §", "DESIGN.md §"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s cites %q, which is not in the repository", f, bad)
			}
		}
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, target)
			}
		}
	}
	conf, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "| `local.dir` | `"+DefaultLocalDirName+"` next to the SQLite file") {
		t.Errorf("docs/configuration.md does not document the default providers.local.dir %q", DefaultLocalDirName)
	}
	c := Default()
	c.Database = "sqlite:///srv/drover/drover.db"
	if got := c.EffectiveLocalDir(); got != "/srv/drover/"+DefaultLocalDirName {
		t.Errorf("EffectiveLocalDir = %q", got)
	}
	// With PostgreSQL every replica on a host shares one directory per
	// deployment, whatever its working directory.
	c.Database = "postgres://u@h/db"
	if got, want := c.EffectiveLocalDir(), filepath.Join(os.TempDir(), DefaultLocalDirName+"-"+c.ClusterName()); got != want {
		t.Errorf("EffectiveLocalDir with PostgreSQL = %q", got)
	}
}
