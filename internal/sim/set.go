package sim

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/droverhq/drover/internal/config"
	"gopkg.in/yaml.v3"
)

// LoadConfig parses a drover.yaml (data, named name), applies the --set
// overrides in order ("pools.default.idle_timeout=2m") and makes every pool
// use the simulated provider. A set whose key does not exist in the
// configuration, or whose value has the wrong type, is an error naming it.
func LoadConfig(data []byte, name string, sets []string) (*config.Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(oneLine(err), "yaml: "))
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: want a YAML mapping at the top", name)
	}
	cfg, err := parseNode(&doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, s := range sets {
		key, value, ok := strings.Cut(s, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("--set %q: want key=value, e.g. pools.default.idle_timeout=2m", s)
		}
		if err := setKey(doc.Content[0], strings.Split(key, "."), value); err != nil {
			return nil, fmt.Errorf("--set %s: %w", s, err)
		}
		if cfg, err = parseNode(&doc); err != nil {
			return nil, fmt.Errorf("--set %s: %w", s, err)
		}
	}
	for _, pc := range cfg.Pools {
		if pc != nil {
			pc.Provider = "sim"
		}
	}
	if err := cfg.Validate(); err != nil {
		if ve, ok := errors.AsType[*config.ValidationError](err); ok {
			return nil, fmt.Errorf("%s: %s", name, strings.Join(ve.Problems, "; "))
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, nil
}

var linePrefix = regexp.MustCompile(`^line \d+: `)

func parseNode(doc *yaml.Node) (*config.Config, error) {
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		msg := yamlMessage(errors.New(strings.TrimPrefix(oneLine(err), "parse yaml: ")))
		return nil, errors.New(linePrefix.ReplaceAllString(msg, ""))
	}
	return cfg, nil
}

// setKey sets path under the mapping m to a scalar value, creating
// intermediate mappings except under pools (a --set cannot invent a pool).
func setKey(m *yaml.Node, path []string, value string) error {
	for i, k := range path {
		if m.Kind != yaml.MappingNode {
			return fmt.Errorf("%s is not a section", strings.Join(path[:i], "."))
		}
		var child *yaml.Node
		for j := 0; j+1 < len(m.Content); j += 2 {
			if m.Content[j].Value == k {
				child = m.Content[j+1]
			}
		}
		last := i == len(path)-1
		if child == nil {
			if i == 1 && path[0] == "pools" {
				return fmt.Errorf("pool %q is not in the config", k)
			}
			child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			if last {
				child = &yaml.Node{Kind: yaml.ScalarNode}
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, child)
		}
		if last {
			if child.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s is a section, not a value", strings.Join(path, "."))
			}
			child.Value, child.Tag, child.Style = value, "", 0
			return nil
		}
		m = child
	}
	return nil
}
