// Package config reads xdpguard's one configuration file
// (/etc/xdpguard/xdpguard.yaml by default; xdpguard.example.yaml beside this
// file documents every key).
//
// A file is decoded strictly and checked as a whole before anything is
// returned: unknown or duplicate keys, wrong types and out-of-range values
// are all errors, every problem in the file is reported at once, and each
// one names its key (kernel.syn_rate.window, allow[3]) and its line. Keys
// left out keep their defaults, so an empty file is a valid configuration.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"go.yaml.in/yaml/v3"
)

// DefaultPath is where the daemon looks without --config.
const DefaultPath = "/etc/xdpguard/xdpguard.yaml"

// DefaultStateDir holds the bans, allow rules and histories that outlive a
// restart.
const DefaultStateDir = "/var/lib/xdpguard"

// Config is the whole file. The daemon applies its command-line flags on
// top and calls Validate again.
type Config struct {
	// Interfaces to attach the XDP program to. The file may leave this
	// empty when --iface is given; the daemon checks that it ends up
	// non-empty.
	Interfaces []string      `yaml:"interfaces"`
	XDPMode    datapath.Mode `yaml:"xdp_mode"` // auto, native or generic

	Kernel Kernel `yaml:"kernel"`
	Logs   Logs   `yaml:"logs"`

	// Detect is the log-detection policy (built-in rule toggles, custom
	// rules, thresholds, escalation). It is kept undecoded here because
	// its schema belongs to package logwatch; the daemon decodes it into
	// logwatch.Config and reports errors with this node's line numbers.
	// Kind is 0 when the file has no detect section.
	Detect yaml.Node `yaml:"detect"`

	// Allow lists prefixes that are never banned, by the kernel or the
	// log layer. A bare address means /32 or /128.
	Allow []netip.Prefix `yaml:"allow"`

	// KillConnections destroys a banned source's established connections
	// to the protected ports (SOCK_DESTROY), freeing login slots at once.
	KillConnections bool `yaml:"kill_connections"`

	// SlotHolders bans sources that hold login slots without a word.
	SlotHolders SlotHolders `yaml:"slot_holders"`

	// GuardRails bound what `xdpguard ban` accepts without --force.
	GuardRails GuardRails `yaml:"guard_rails"`
	// KnownGood remembers the sources that logged in (knowngood.go).
	KnownGood KnownGood `yaml:"known_good"`
	// IPv6Escalation bans a /48 whose /64s offend one after another.
	IPv6Escalation IPv6Escalation `yaml:"ipv6_escalation"`

	PinRoot  string `yaml:"pin_root"`  // bpffs directory for pinned maps and links
	StateDir string `yaml:"state_dir"` // where bans and offender history persist

	Log     Log     `yaml:"log"`
	Metrics Metrics `yaml:"metrics"`

	CrowdSec CrowdSec `yaml:"crowdsec"`
}

// SlotHolders is the third detector, beside the SYN rate and the logs:
// accepted connections to the protected ports that received at most
// MaxBytes and nothing for Idle. The log layer hears of such a connection
// only when the server times it out (Dovecot: after 180 s), and the SYN
// rate never, because a holder does not reconnect. A source (masked like a
// ban) holding MinConnections of them at once is banned. The connections
// are scanned every ScanInterval.
type SlotHolders struct {
	Enabled        bool          `yaml:"enabled"`
	MinConnections int           `yaml:"min_connections"`
	Idle           time.Duration `yaml:"idle"`
	MaxBytes       int           `yaml:"max_bytes"`
	ScanInterval   time.Duration `yaml:"scan_interval"`
	Pressure       SlotPressure  `yaml:"pressure"`
}

// SlotPressure makes the slot-holder detector faster while the login slots
// are running out, which is when silent holders hurt users. The slots are
// under pressure when at least Connections connections to the protected
// ports are waiting in the server's accept queues (no slot is free to take
// them) or are accepted and quiet for Idle: the server spoke last, the
// client acknowledged it and has said nothing since (internal/sockets'
// Holder.Quiet). The accept queues are checked every ScanInterval. Under
// pressure, and for Hold after it was last seen, the connections are
// scanned every ScanInterval and a connection quiet for Idle counts
// towards MinConnections, as well as one silent for SlotHolders.Idle as
// usual. Quiet time leaves out the round trip and a server slow to greet
// or answer, so neither a slow link nor a busy server makes a client look
// silent. Idle and ScanInterval are capped by SlotHolders' own.
// Connections 0 turns this off.
type SlotPressure struct {
	Connections  int           `yaml:"connections"`
	Idle         time.Duration `yaml:"idle"`
	ScanInterval time.Duration `yaml:"scan_interval"`
	Hold         time.Duration `yaml:"hold"`
	Evict        SlotEvict     `yaml:"evict"`
}

// GuardRails are the limits on manual bans. A ban wider than these prefix
// lengths is refused without --force: one typo (0.0.0.0/0, 10.0.0.0/1)
// would otherwise drop every packet, SSH included.
type GuardRails struct {
	WidestBanV4 int `yaml:"widest_ban_v4"` // 0-32
	WidestBanV6 int `yaml:"widest_ban_v6"` // 0-128
}

// Kernel holds the XDP program's settings and map sizes.
type Kernel struct {
	Ports   []uint16 `yaml:"ports"` // protected TCP ports
	SYNRate SYNRate  `yaml:"syn_rate"`
	// Admission limits new connections while the login slots run out.
	Admission Admission `yaml:"admission"`
	// BanDuration is how long a kernel auto-ban lasts.
	BanDuration time.Duration  `yaml:"ban_duration"`
	BanScope    datapath.Scope `yaml:"ban_scope"` // all or ports
	// Monitor is a dry run: count what would be dropped, drop nothing.
	Monitor bool `yaml:"monitor"`
	// Ban granularity: sources are masked to these lengths.
	PrefixV4 int `yaml:"prefix_v4"`
	PrefixV6 int `yaml:"prefix_v6"`
	// Map sizes, per address family.
	MaxBans      int `yaml:"max_bans"`
	MaxTracked   int `yaml:"max_tracked"` // SYN tracker slots, rounded up to a power of two
	MaxCIDRRules int `yaml:"max_cidr_rules"`
}

// SYNRate is the kernel's auto-ban rule: more than Threshold new
// connections to protected ports within Window bans the source.
type SYNRate struct {
	Threshold int           `yaml:"threshold"` // 0 disables kernel auto-bans
	Window    time.Duration `yaml:"window"`
	// RetransmitWindow: a SYN resent within this long (same source port
	// and sequence number) is the same connection, not counted again.
	RetransmitWindow time.Duration `yaml:"retransmit_window"`
}

// Admission: while the daemon sees the login slots run out, a source that
// has never logged in opens at most one new connection per Interval, so
// that bots cannot refill the slots as fast as they are freed. Sources that
// logged in are not limited. 0, the default, turns the limit off: see
// datapath.DefaultAdmissionInterval for what it did in the end-to-end test.
type Admission struct {
	Interval time.Duration `yaml:"interval"`
}

// Logs says which mail logs to follow.
type Logs struct {
	Files []string `yaml:"files"`
	// ReadBack replays this much recent history (by line timestamps) on
	// start. 0 starts at the end, so old attacks ban no one at start-up.
	ReadBack time.Duration `yaml:"read_back"`
	// Journal follows the systemd journal too: on a stock Debian 12 the
	// mail logs go to journald only.
	Journal Journal `yaml:"journal"`
}

// Journal selects what to read from the systemd journal: entries of any
// of the units, or with any of the syslog identifiers. The daemon resumes
// after the last entry it read (the cursor is kept in the state file).
type Journal struct {
	Enabled     bool     `yaml:"enabled"`
	Units       []string `yaml:"units"`
	Identifiers []string `yaml:"identifiers"`
	// Directory reads journal files from there instead of the system
	// journal (journalctl --directory), e.g. a container's.
	Directory string `yaml:"directory"`
}

// Log is the daemon's own logging.
type Log struct {
	Format string `yaml:"format"` // text or json
	Level  string `yaml:"level"`  // debug, info, warn or error
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port; empty is off
}

// Default returns the configuration of an absent file. The kernel's
// values are datapath.DefaultSettings, so the file and a bare Load agree.
func Default() Config {
	k := datapath.DefaultSettings()
	return Config{
		Interfaces: []string{},
		XDPMode:    datapath.ModeAuto,
		Kernel: Kernel{
			Ports: k.Ports,
			SYNRate: SYNRate{Threshold: int(k.RateThreshold), Window: k.RateWindow,
				RetransmitWindow: k.RetransmitWindow},
			Admission:    Admission{Interval: k.AdmissionInterval},
			BanDuration:  k.BanDuration,
			BanScope:     k.Scope,
			Monitor:      k.Monitor,
			PrefixV4:     k.PrefixV4,
			PrefixV6:     k.PrefixV6,
			MaxBans:      1 << 20,
			MaxTracked:   1 << 16,
			MaxCIDRRules: 1 << 16,
		},
		Logs: Logs{Files: []string{"/var/log/maillog", "/var/log/mail.log"},
			// Dovecot's unit; the syslog identifiers of Dovecot (not
			// started by its unit) and of Postfix's smtpd services
			// (master.cf's default syslog_name for submission, smtps).
			Journal: Journal{Units: []string{"dovecot.service"},
				Identifiers: []string{"dovecot", "postfix/smtpd", "postfix/submission/smtpd", "postfix/smtps/smtpd"}}},
		Allow:           []netip.Prefix{},
		KillConnections: true,
		SlotHolders: SlotHolders{Enabled: true, MinConnections: 2, Idle: 5 * time.Second, MaxBytes: 32,
			ScanInterval: time.Second,
			Pressure: SlotPressure{Connections: 20, Idle: time.Second, ScanInterval: 250 * time.Millisecond,
				Hold: time.Minute, Evict: SlotEvict{Enabled: true, Grace: time.Second, FreshPorts: DefaultFreshPorts(), Refuse: 10 * time.Minute, FreshRate: 2}}},
		GuardRails:     GuardRails{WidestBanV4: 8, WidestBanV6: 32},
		KnownGood:      KnownGood{Retention: 30 * 24 * time.Hour, MaxEntries: 65536, PriorityPorts: DefaultPriorityPorts()},
		IPv6Escalation: IPv6Escalation{Enabled: true, Prefix: 48, Offenders: 3, Window: 10 * time.Minute},
		PinRoot:        datapath.DefaultPinRoot,
		StateDir:       DefaultStateDir,
		Log:            Log{Format: "text", Level: "info"},
		CrowdSec:       defaultCrowdSec(),
	}
}

// Error lists every problem in a configuration, each naming its key.
type Error struct {
	File     string // empty when parsed from bytes
	Problems []Problem
}

// Problem is one bad key.
type Problem struct {
	Key  string // dotted path: kernel.syn_rate.window, allow[3]; "" for the file
	Msg  string
	Line int // 0 when not known (Validate after flags were applied)
}

func (p Problem) String() string {
	s := p.Msg
	if p.Key != "" {
		s = p.Key + ": " + s
	}
	if p.Line > 0 {
		s += fmt.Sprintf(" (line %d)", p.Line)
	}
	return s
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File + ": ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads and checks the file at path. Errors name the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	return c, err
}

// Parse decodes and checks a file's contents. On error it returns nil and
// an *Error with every problem found.
func Parse(data []byte) (*Config, error) {
	c := Default()
	d := decoder{lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case err == io.EOF: // empty file: all defaults
	case err != nil:
		// The YAML parser's message already carries the line.
		return nil, &Error{Problems: []Problem{{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}}
	default:
		var extra yaml.Node
		if err := dec.Decode(&extra); err != io.EOF {
			return nil, &Error{Problems: []Problem{{Msg: "more than one YAML document (a line \"---\"); xdpguard reads one", Line: extra.Line}}}
		}
		if root := doc.Content[0]; !isNull(root) { // a file of comments is all defaults
			d.value(root, valueOf(&c), "")
		}
	}
	// Validate even after decode problems, so that one run shows every
	// problem; skip keys that failed to decode (they hold defaults or
	// zeros that would only repeat the complaint).
	failed := map[string]bool{}
	for _, p := range d.problems {
		failed[p.Key] = true
	}
	for _, p := range c.validate() {
		if !failed[p.Key] {
			p.Line = d.line(p.Key)
			d.problems = append(d.problems, p)
		}
	}
	if len(d.problems) > 0 {
		return nil, &Error{Problems: d.problems}
	}
	return &c, nil
}

// Validate checks every value, as Parse does, for a Config changed after
// parsing (command-line flags). Problems carry no line numbers.
func (c *Config) Validate() error {
	if ps := c.validate(); len(ps) > 0 {
		return &Error{Problems: ps}
	}
	return nil
}

// Settings maps the kernel section to the program's settings. Validate has
// checked them, so SetSettings takes them as they are.
func (k Kernel) Settings() datapath.Settings {
	return datapath.Settings{
		Ports:             k.Ports,
		RateThreshold:     uint32(k.SYNRate.Threshold),
		RateWindow:        k.SYNRate.Window,
		BanDuration:       k.BanDuration,
		Scope:             k.BanScope,
		Monitor:           k.Monitor,
		PrefixV4:          k.PrefixV4,
		PrefixV6:          k.PrefixV6,
		RetransmitWindow:  k.SYNRate.RetransmitWindow,
		AdmissionInterval: k.Admission.Interval,
	}
}
