package logwatch

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// Config is the logwatch part of the daemon's configuration. The zero value
// is not useful; start from DefaultConfig.
type Config struct {
	// Files to follow; missing ones are waited for.
	Files []string `yaml:"files" json:"files"`
	// Builtin switches the built-in rules on and off, by name
	// (dovecot-login, dovecot-auth, postfix-sasl). Absent names stay on.
	Builtin map[string]bool `yaml:"builtin" json:"builtin"`
	// Rules are custom rules, tried on lines no built-in rule matched.
	Rules []RuleConfig `yaml:"rules" json:"rules"`
	// Weights per event kind of the built-in rules (see Kind names).
	Weights map[string]int `yaml:"weights" json:"weights"`
	// Threshold is the score, within Window, at which a source is banned.
	Threshold int           `yaml:"threshold" json:"threshold"`
	Window    time.Duration `yaml:"window" json:"window"`
	// BanDuration is the first ban's length; each repeat offence within
	// HistoryRetention multiplies it by EscalationFactor, up to MaxBanDuration.
	BanDuration      time.Duration `yaml:"ban_duration" json:"ban_duration"`
	EscalationFactor float64       `yaml:"escalation_factor" json:"escalation_factor"`
	MaxBanDuration   time.Duration `yaml:"max_ban_duration" json:"max_ban_duration"`
	HistoryRetention time.Duration `yaml:"history_retention" json:"history_retention"`
	// IPv4Mask and IPv6Mask are the prefix lengths a source is scored and
	// banned by; they must match the kernel's granularity.
	IPv4Mask int `yaml:"ipv4_mask" json:"ipv4_mask"`
	IPv6Mask int `yaml:"ipv6_mask" json:"ipv6_mask"`
	// Allowlist: sources inside these prefixes are never banned, nor is a
	// prefix that overlaps one of them. Loopback and the host's own
	// addresses are always allowed.
	Allowlist []netip.Prefix `yaml:"allowlist" json:"allowlist"`
	// MaxSources caps the sources being scored (least recently seen are
	// dropped); MaxOffenders caps the ban history (oldest dropped).
	MaxSources   int `yaml:"max_sources" json:"max_sources"`
	MaxOffenders int `yaml:"max_offenders" json:"max_offenders"`
	// MaxLineBytes: longer lines are skipped and counted. A cut line would
	// have lost the trustworthy tail of a Dovecot line (rip= comes last).
	MaxLineBytes int `yaml:"max_line_bytes" json:"max_line_bytes"`
	// Backlog, when positive, makes the follower replay that much of each
	// file's recent history (by line timestamps) at start-up.
	Backlog time.Duration `yaml:"backlog" json:"backlog"`
}

// RuleConfig is a custom rule.
type RuleConfig struct {
	Name string `yaml:"name" json:"name"`
	// Regexp is RE2 syntax with a named group "ip" and optionally "user".
	// It is matched against the whole line.
	Regexp string `yaml:"regexp" json:"regexp"`
	Kind   string `yaml:"kind" json:"kind"`
	Weight int    `yaml:"weight" json:"weight"`
	// Requires disables the rule when this path does not exist (the
	// daemon it watches is not installed), like BFD's REQ=.
	Requires string `yaml:"requires" json:"requires"`
	// Files limits the rule to lines from these files (exact paths).
	Files []string `yaml:"files" json:"files"`
}

// Default policy values; doc.go explains the choices.
const (
	DefaultThreshold    = 10
	DefaultWindow       = 10 * time.Minute
	DefaultBanDuration  = time.Hour
	DefaultEscalation   = 2.0
	DefaultMaxBan       = 7 * 24 * time.Hour
	DefaultRetention    = 30 * 24 * time.Hour
	DefaultMaxSources   = 1 << 18
	DefaultMaxOffenders = 1 << 18
	DefaultMaxLineBytes = 16 << 10
)

// DefaultWeights are the built-in kinds' weights.
func DefaultWeights() map[string]int {
	return map[string]int{
		KindNoAuth.String():      1,
		KindAuthFailed.String():  2,
		KindAuthBackend.String(): 0,
		KindPlaintext.String():   2,
		KindTLSFailed.String():   1,
		KindProbe.String():       1,
		KindConnLimit.String():   0,
		KindLogin.String():       0,
		// As no-auth: it was, until it was closed to make room.
		KindProcessFull.String(): 1,
	}
}

// DefaultConfig returns the defaults, safe for a real mail host.
func DefaultConfig() Config {
	return Config{
		Files:            []string{"/var/log/maillog", "/var/log/mail.log"},
		Builtin:          map[string]bool{RuleDovecotLogin: true, RuleDovecotAuth: true, RulePostfixSASL: true},
		Weights:          DefaultWeights(),
		Threshold:        DefaultThreshold,
		Window:           DefaultWindow,
		BanDuration:      DefaultBanDuration,
		EscalationFactor: DefaultEscalation,
		MaxBanDuration:   DefaultMaxBan,
		HistoryRetention: DefaultRetention,
		IPv4Mask:         32,
		IPv6Mask:         64,
		MaxSources:       DefaultMaxSources,
		MaxOffenders:     DefaultMaxOffenders,
		MaxLineBytes:     DefaultMaxLineBytes,
	}
}

var builtinNames = []string{RuleDovecotLogin, RuleDovecotAuth, RulePostfixSASL}

// Validate checks every field and names the first bad key and its problem.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

type compiledRule struct {
	name     string
	re       *regexp.Regexp
	ipIdx    int
	kind     Kind
	weight   int
	files    map[string]bool
	disabled string // reason, when Requires is missing
}

// compiled is the validated, ready form of a Config.
type compiled struct {
	cfg     Config
	builtin [3]bool
	weights [numKinds]int
	custom  []compiledRule
}

func (c Config) compile() (*compiled, error) {
	out := &compiled{cfg: c}
	for name := range c.Builtin {
		if !contains(builtinNames, name) {
			return nil, fmt.Errorf("builtin: unknown rule %q (known: %v)", name, builtinNames)
		}
	}
	for i, name := range builtinNames {
		on, set := c.Builtin[name]
		out.builtin[i] = on || !set
	}
	w := DefaultWeights()
	keys := make([]string, 0, len(c.Weights))
	for k := range c.Weights {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := ParseKind(k); err != nil {
			return nil, fmt.Errorf("weights: %w", err)
		}
		if v := c.Weights[k]; v < 0 || v > 1000 {
			return nil, fmt.Errorf("weights[%s]: %d is outside 0..1000", k, v)
		}
		w[k] = c.Weights[k]
	}
	for k, v := range w {
		kind, _ := ParseKind(k)
		out.weights[kind] = v
	}
	switch {
	case c.Threshold < 1 || c.Threshold > 10000:
		return nil, fmt.Errorf("threshold: %d is outside 1..10000", c.Threshold)
	case c.Window < time.Second:
		return nil, fmt.Errorf("window: %v is shorter than 1s", c.Window)
	case c.BanDuration < time.Second:
		return nil, fmt.Errorf("ban_duration: %v is shorter than 1s", c.BanDuration)
	case c.EscalationFactor < 1 || c.EscalationFactor > 100:
		return nil, fmt.Errorf("escalation_factor: %v is outside 1..100", c.EscalationFactor)
	case c.MaxBanDuration < c.BanDuration:
		return nil, fmt.Errorf("max_ban_duration: %v is shorter than ban_duration %v", c.MaxBanDuration, c.BanDuration)
	case c.HistoryRetention < 0:
		return nil, fmt.Errorf("history_retention: %v is negative", c.HistoryRetention)
	case c.IPv4Mask < 8 || c.IPv4Mask > 32:
		return nil, fmt.Errorf("ipv4_mask: /%d is outside /8../32", c.IPv4Mask)
	case c.IPv6Mask < 16 || c.IPv6Mask > 128:
		return nil, fmt.Errorf("ipv6_mask: /%d is outside /16../128", c.IPv6Mask)
	case c.MaxSources < 1:
		return nil, fmt.Errorf("max_sources: %d must be at least 1", c.MaxSources)
	case c.MaxOffenders < 1:
		return nil, fmt.Errorf("max_offenders: %d must be at least 1", c.MaxOffenders)
	case c.MaxLineBytes < 256:
		return nil, fmt.Errorf("max_line_bytes: %d is below 256", c.MaxLineBytes)
	case c.Backlog < 0:
		return nil, fmt.Errorf("backlog: %v is negative", c.Backlog)
	}
	for i, p := range c.Allowlist {
		if !p.IsValid() {
			return nil, fmt.Errorf("allowlist[%d]: invalid prefix", i)
		}
	}
	seen := map[string]bool{}
	for _, n := range builtinNames {
		seen[n] = true
	}
	for i, r := range c.Rules {
		cr, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("rules[%d] %q: %w", i, r.Name, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("rules[%d] %q: name already used", i, r.Name)
		}
		seen[r.Name] = true
		out.custom = append(out.custom, cr)
	}
	return out, nil
}

func compileRule(r RuleConfig) (compiledRule, error) {
	cr := compiledRule{name: r.Name, weight: r.Weight}
	if r.Name == "" {
		return cr, errors.New("name: empty")
	}
	re, err := regexp.Compile(r.Regexp)
	if err != nil {
		return cr, fmt.Errorf("regexp: %w", err)
	}
	cr.re = re
	cr.ipIdx = re.SubexpIndex("ip")
	if cr.ipIdx < 0 {
		return cr, errors.New("regexp: no named group (?P<ip>...)")
	}
	if r.Kind == "" {
		return cr, errors.New("kind: empty")
	}
	if cr.kind, err = ParseKind(r.Kind); err != nil {
		return cr, fmt.Errorf("kind: %w", err)
	}
	if r.Weight < 0 || r.Weight > 1000 {
		return cr, fmt.Errorf("weight: %d is outside 0..1000", r.Weight)
	}
	if len(r.Files) > 0 {
		cr.files = map[string]bool{}
		for _, f := range r.Files {
			cr.files[f] = true
		}
	}
	if r.Requires != "" {
		if _, err := os.Stat(r.Requires); err != nil {
			cr.disabled = fmt.Sprintf("requires %s: %v", r.Requires, err)
		}
	}
	return cr, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// granularity is what sources are scored and banned by: the kernel's,
// which the daemon copies into IPv4Mask and IPv6Mask.
func (c Config) granularity() datapath.Granularity {
	return datapath.Granularity{V4: c.IPv4Mask, V6: c.IPv6Mask}
}
