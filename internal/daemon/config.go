package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// sharedKeys are detect keys that the file sets elsewhere, once, for both
// layers; accepting them under detect would let the two disagree.
var sharedKeys = map[string]string{
	"files":     "logs.files",
	"allowlist": "allow",
	"ipv4_mask": "kernel.prefix_v4",
	"ipv6_mask": "kernel.prefix_v6",
	"backlog":   "logs.read_back",
}

// Resolve validates a configuration (file plus flags) as a whole and decodes
// its detect section, so that nothing is applied from a bad file.
func Resolve(c config.Config) (Config, error) {
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	if len(c.Interfaces) == 0 {
		return Config{}, errors.New("interfaces: none given (set interfaces in the file, or --iface)")
	}
	det, err := DetectConfig(c)
	if err != nil {
		return Config{}, err
	}
	return Config{Config: c, Detect: det}, nil
}

// DetectConfig decodes the file's detect section and puts the keys the
// file sets once for both layers (logs, allow, prefixes) into it. It is the
// log layer's view of the daemon's file, which `xdpguard logtest` reads too.
func DetectConfig(c config.Config) (logwatch.Config, error) {
	det := logwatch.DefaultConfig()
	if c.Detect.Kind != 0 {
		if c.Detect.Kind != yaml.MappingNode {
			return logwatch.Config{}, fmt.Errorf("detect (line %d): must be a mapping", c.Detect.Line)
		}
		for i := 0; i+1 < len(c.Detect.Content); i += 2 {
			k := c.Detect.Content[i]
			if use, ok := sharedKeys[k.Value]; ok {
				return logwatch.Config{}, fmt.Errorf("detect.%s (line %d): set %s instead; it applies to the kernel and the logs alike", k.Value, k.Line, use)
			}
		}
		// Re-encode and decode strictly: yaml.Node.Decode ignores unknown keys.
		raw, err := yaml.Marshal(&c.Detect)
		if err != nil {
			return logwatch.Config{}, fmt.Errorf("detect: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&det); err != nil && !errors.Is(err, io.EOF) {
			return logwatch.Config{}, fmt.Errorf("detect (line %d): %w", c.Detect.Line, err)
		}
	}
	det.Files = c.Logs.Files
	det.Allowlist = c.Allow
	det.IPv4Mask = c.Kernel.PrefixV4
	det.IPv6Mask = c.Kernel.PrefixV6
	det.Backlog = c.Logs.ReadBack
	if err := det.Validate(); err != nil {
		return logwatch.Config{}, fmt.Errorf("detect: %w", err)
	}
	return det, nil
}
