package config

import (
	"path/filepath"
	"strings"
)

// DefaultLocalDirName is the local provider's state directory when
// providers.local.dir is not set: drover-agents next to the SQLite
// database file, or in the working directory with PostgreSQL.
const DefaultLocalDirName = "drover-agents"

// EffectiveLocalDir is providers.local.dir, or its default: DefaultLocalDirName
// next to the SQLite database file, else in the working directory.
func (c *Config) EffectiveLocalDir() string {
	if c.Providers.Local.Dir != "" {
		return c.Providers.Local.Dir
	}
	db := c.Database
	switch {
	case strings.HasPrefix(db, "sqlite://"):
		db = strings.TrimPrefix(db, "sqlite://")
	case strings.Contains(db, "://"), db == "":
		return DefaultLocalDirName
	}
	return filepath.Join(filepath.Dir(db), DefaultLocalDirName)
}
