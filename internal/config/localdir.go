package config

import (
	"os"
	"path/filepath"
	"strings"
)

// DefaultLocalDirName is the local provider's state directory when
// providers.local.dir is not set: drover-agents next to the SQLite
// database file; with PostgreSQL, drover-agents-<cluster> in the system's
// temporary directory, so that every replica of one deployment on a host
// finds the same agents whatever its working directory.
const DefaultLocalDirName = "drover-agents"

// EffectiveLocalDir is providers.local.dir, or its default: DefaultLocalDirName
// next to the SQLite database file; for any other database a host-wide
// directory named after the deployment (ClusterName), shared by all its
// replicas on this host.
func (c *Config) EffectiveLocalDir() string {
	if c.Providers.Local.Dir != "" {
		return c.Providers.Local.Dir
	}
	db := c.Database
	switch {
	case strings.HasPrefix(db, "sqlite://"):
		db = strings.TrimPrefix(db, "sqlite://")
	case strings.Contains(db, "://"):
		return filepath.Join(os.TempDir(), DefaultLocalDirName+"-"+c.ClusterName())
	case db == "":
		return DefaultLocalDirName
	}
	return filepath.Join(filepath.Dir(db), DefaultLocalDirName)
}
