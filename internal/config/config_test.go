package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

func mustParse(t *testing.T, s string) *Config {
	t.Helper()
	c, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return c
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyFilesAreDefaults(t *testing.T) {
	for _, s := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		c := mustParse(t, s)
		if !reflect.DeepEqual(*c, Default()) {
			t.Errorf("%q: got %+v, want defaults", s, *c)
		}
	}
}

// The shipped example claims that every value in it is the default; it
// must parse, equal Default(), and mention every key Config has.
func TestExampleIsDefaults(t *testing.T) {
	data, err := os.ReadFile("xdpguard.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*c, Default()) {
		t.Errorf("example differs from Default():\n got  %+v\n want %+v", *c, Default())
	}
	// Every key is documented: present as a key, or (for detect, whose
	// schema is logwatch's) in a comment.
	var missing []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			ft := t.Field(i).Type
			if !strings.Contains(string(data), name+":") {
				missing = append(missing, prefix+name)
			}
			if ft.Kind() == reflect.Struct && ft != nodeType && ft != prefixType {
				walk(ft, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	if len(missing) > 0 {
		t.Errorf("keys not documented in the example: %v", missing)
	}
	// The commented detect example must at least be valid YAML with the
	// shape the daemon expects (a mapping), once uncommented.
	var detect []string
	on := false
	for _, l := range strings.Split(string(data), "\n") {
		if l == "# detect:" {
			on = true
		}
		if on {
			if !strings.HasPrefix(l, "#") {
				break
			}
			detect = append(detect, strings.TrimPrefix(strings.TrimPrefix(l, "#"), " "))
		}
	}
	c, err = Parse([]byte(strings.Join(detect, "\n")))
	if err != nil || c.Detect.Kind != yaml.MappingNode || len(c.Detect.Content) < 10 {
		t.Errorf("uncommented detect example: %v, %+v", err, c)
	}
}

func TestParseFullFile(t *testing.T) {
	c := mustParse(t, `
interfaces: [eth1, "bond0.100"]
xdp_mode: native
kernel:
  ports: [110, 995]
  syn_rate: {threshold: 0, window: 0s, retransmit_window: 3s}  # threshold 0: window unused
  admission: {interval: 0s}
  ban_duration: 1h30m
  ban_scope: ports
  monitor: true
  prefix_v4: 24
  prefix_v6: 56
  max_bans: 4096
  max_tracked: 1024
  max_cidr_rules: 16
logs:
  files: [/var/log/dovecot.log]
  read_back: 15m
  journal: {enabled: true, identifiers: [postfix/smtpd], directory: /var/log/journal/remote}
detect:
  threshold: 5
  rules:
    - name: x
allow:
  - 192.0.2.7
  - 198.51.100.0/24
  - "2001:db8::/32"
  - ::ffff:203.0.113.9
kill_connections: false
slot_holders: {min_connections: 5, idle: 30s, scan_interval: 2s, pressure: {connections: 50, idle: 2s, scan_interval: 500ms, hold: 5m,
  evict: {enabled: false, grace: 3s}}}
known_good: {retention: 240h, max_entries: 1000, priority_ports: {995: 30995}}
ipv6_escalation: {enabled: false, prefix: 40, offenders: 5, window: 1h}
guard_rails: {widest_ban_v4: 16, widest_ban_v6: 48}
pin_root: /sys/fs/bpf/test
state_dir: /tmp/state
log: {format: json, level: debug}
metrics: {listen: "[::1]:9931"}
crowdsec:
  lapi_url: http://127.0.0.1:8080/
  api_key_file: /etc/xdpguard/crowdsec.key
  update_frequency: 2s
  scopes: [Ip]
  origins: [cscli, CAPI]
  scenarios_not_containing: [http]
  machine_id: mail1
  password: secret
`)
	want := Config{
		Interfaces: []string{"eth1", "bond0.100"},
		XDPMode:    datapath.ModeNative,
		Kernel: Kernel{
			Ports: []uint16{110, 995}, SYNRate: SYNRate{Threshold: 0, Window: 0, RetransmitWindow: 3 * time.Second},
			BanDuration: 90 * time.Minute, BanScope: datapath.ScopePorts, Monitor: true,
			PrefixV4: 24, PrefixV6: 56, MaxBans: 4096, MaxTracked: 1024, MaxCIDRRules: 16,
		},
		Logs: Logs{Files: []string{"/var/log/dovecot.log"}, ReadBack: 15 * time.Minute,
			Journal: Journal{Enabled: true, Units: []string{"dovecot.service"}, Identifiers: []string{"postfix/smtpd"},
				Directory: "/var/log/journal/remote"}},
		Allow: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("198.51.100.0/24"),
			netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("203.0.113.9/32"),
		},
		KillConnections: false,
		SlotHolders: SlotHolders{Enabled: true, MinConnections: 5, Idle: 30 * time.Second, MaxBytes: 32,
			ScanInterval: 2 * time.Second, Pressure: SlotPressure{Connections: 50, Idle: 2 * time.Second,
				ScanInterval: 500 * time.Millisecond, Hold: 5 * time.Minute, Evict: SlotEvict{Grace: 3 * time.Second, FreshPorts: DefaultFreshPorts(), Refuse: 10 * time.Minute, FreshRate: 2}}},
		GuardRails:     GuardRails{WidestBanV4: 16, WidestBanV6: 48},
		KnownGood:      KnownGood{Retention: 240 * time.Hour, MaxEntries: 1000, PriorityPorts: PortMap{995: 30995}},
		IPv6Escalation: IPv6Escalation{Prefix: 40, Offenders: 5, Window: time.Hour},
		PinRoot:        "/sys/fs/bpf/test",
		StateDir:       "/tmp/state",
		Log:            Log{Format: "json", Level: "debug"},
		Metrics:        Metrics{Listen: "[::1]:9931"},
		CrowdSec: CrowdSec{LAPIURL: "http://127.0.0.1:8080/", APIKeyFile: "/etc/xdpguard/crowdsec.key",
			UpdateFrequency: 2 * time.Second, Scopes: []string{"Ip"}, Origins: []string{"cscli", "CAPI"},
			ScenariosContaining: []string{}, ScenariosNotContaining: []string{"http"},
			SupportedDecisionsTypes: []string{"ban"}, MachineID: "mail1", Password: "secret"},
	}
	got := *c
	detect := got.Detect
	got.Detect = yaml.Node{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// The raw detect section decodes the way the daemon will decode it,
	// with its line numbers intact.
	var d struct {
		Threshold int `yaml:"threshold"`
		Rules     []struct {
			Name string `yaml:"name"`
		} `yaml:"rules"`
	}
	if err := detect.Decode(&d); err != nil || d.Threshold != 5 || len(d.Rules) != 1 || d.Rules[0].Name != "x" {
		t.Errorf("detect: %+v, %v", d, err)
	}
	if detect.Line != 21 {
		t.Errorf("detect node at line %d, want 21", detect.Line)
	}
}

// Keys left out keep their defaults; a list given replaces the default.
func TestPartialFileKeepsDefaults(t *testing.T) {
	c := mustParse(t, "kernel:\n  syn_rate:\n    threshold: 50\nlogs:\n  files: []\n")
	want := Default()
	want.Kernel.SYNRate.Threshold = 50
	want.Logs.Files = []string{}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string // every problem, in order
	}{
		{"zero window", "kernel:\n  syn_rate:\n    window: 0s\n",
			[]string{`kernel.syn_rate.window: must be > 0, got "0s" (line 3)`}},
		{"bad allow", "allow:\n  - 10.0.0.1\n  - 10.0.0.0/8\n  - 192.0.2.0/24\n  - 10.0.0.300/8\n  - 10.0.0.1/8\n",
			[]string{`allow[3]: "10.0.0.300/8": invalid address (line 5)`,
				`allow[4]: "10.0.0.1/8": host bits set (the network is 10.0.0.0/8) (line 6)`}},
		{"unknown keys", "kernel:\n  prots: [1]\nmonitor: true\n",
			[]string{"kernel.prots: unknown key (known here: admission, ban_duration, ban_scope, max_bans, max_cidr_rules, max_tracked, monitor, ports, prefix_v4, prefix_v6, syn_rate) (line 2)",
				"monitor: unknown key (known here: allow, crowdsec, detect, guard_rails, interfaces, ipv6_escalation, kernel, kill_connections, known_good, log, logs, metrics, pin_root, slot_holders, state_dir, xdp_mode) (line 3)"}},
		{"crowdsec", "crowdsec:\n  lapi_url: ftp://x\n  update_frequency: 100ms\n  scopes: [ip, country]\n  supported_decisions_types: [captcha]\n  machine_id: m\n",
			[]string{`crowdsec.lapi_url: "ftp://x": want http(s)://host:port/ (line 2)`,
				`crowdsec.update_frequency: must be 1s-1h, got "100ms" (line 3)`,
				`crowdsec.scopes: "country": xdpguard applies ip and range decisions only (line 4)`,
				`crowdsec.supported_decisions_types: [captcha]: an XDP program can only drop, so [ban] (line 5)`,
				`crowdsec.password: machine_id and password go together (line 2)`}},
		{"crowdsec without a key", "crowdsec:\n  lapi_url: http://127.0.0.1:8080\n",
			[]string{`crowdsec.api_key: lapi_url is set but neither api_key, api_key_file nor machine_id is: nothing to do (line 2)`}},
		{"duplicate key", "xdp_mode: auto\nxdp_mode: native\n",
			[]string{"xdp_mode: duplicate key (line 2)"}},
		{"ports", "kernel:\n  ports: [110, 70000, 0, 110, x]\n",
			[]string{`kernel.ports[1]: must be a port number 1-65535, got "70000" (line 2)`,
				`kernel.ports[4]: must be a port number 1-65535, got "x" (line 2)`,
				`kernel.ports[2]: must be 1-65535, got 0 (line 2)`,
				`kernel.ports[3]: port 110 listed twice (line 2)`}},
		{"no ports", "kernel: {ports: []}\n", []string{"kernel.ports: at least one protected port is needed (line 1)"}},
		{"bare number duration", "kernel:\n  ban_duration: 600\n",
			[]string{`kernel.ban_duration: invalid duration "600" (write a number with a unit: "90s", "10m", "1h") (line 2)`}},
		{"bad duration", "logs: {read_back: 10 minutes}\n",
			[]string{`logs.read_back: invalid duration "10 minutes" (write a number with a unit: "90s", "10m", "1h") (line 1)`}},
		{"negative duration", "logs: {read_back: -1m}\n", []string{`logs.read_back: must be >= 0, got "-1m0s" (line 1)`}},
		{"journal selects nothing", "logs:\n  journal: {enabled: true, units: [], identifiers: []}\n", []string{`logs.journal: enabled with no units and no identifiers: nothing would be read (line 2)`}},
		{"journal names", "logs:\n  journal:\n    identifiers: [\"a=b\", \"+\", x, x]\n    directory: rel\n", []string{
			`logs.journal.identifiers[0]: "a=b": a name has no '=', blanks or NUL and is not '+' (line 3)`,
			`logs.journal.identifiers[1]: "+": a name has no '=', blanks or NUL and is not '+' (line 3)`,
			`logs.journal.identifiers[3]: "x": listed twice (line 3)`,
			`logs.journal.directory: "rel": must be an absolute path (line 4)`}},
		{"slot holders out of range", "slot_holders: {idle: 100ms, min_connections: 0}\n",
			[]string{`slot_holders.min_connections: must be >= 1, got 0 (line 1)`, `slot_holders.idle: must be >= 1s, got "100ms" (line 1)`}},
		{"slot pressure off, scan too often", "slot_holders:\n  scan_interval: 10ms\n  pressure: {connections: -1, idle: 1ms}\n",
			[]string{`slot_holders.scan_interval: must be 100ms-1m, got "10ms" (line 2)`,
				`slot_holders.pressure.connections: must be >= 0 (0 turns pressure off), got -1 (line 3)`}},
		{"slot pressure out of range", "slot_holders:\n  pressure:\n    idle: 100ms\n    scan_interval: 2m\n    hold: -1s\n",
			[]string{`slot_holders.pressure.idle: must be >= 500ms, got "100ms" (line 3)`,
				`slot_holders.pressure.scan_interval: must be 100ms-1m, got "2m0s" (line 4)`,
				`slot_holders.pressure.hold: must be 0-24h, got "-1s" (line 5)`}},
		{"yes is not a bool", "kill_connections: yes\n",
			[]string{`kill_connections: must be true or false, got "yes" (line 1)`}},
		{"enums", "xdp_mode: xdp\nkernel: {ban_scope: some}\nlog: {format: xml, level: verbose}\n",
			[]string{`xdp_mode: must be one of auto, native, generic, got "xdp" (line 1)`,
				`kernel.ban_scope: must be one of all, ports, got "some" (line 2)`,
				`log.format: must be one of text, json, got "xml" (line 3)`,
				`log.level: must be one of debug, info, warn, error, got "verbose" (line 3)`}},
		{"prefix lengths", "kernel: {prefix_v4: 33, prefix_v6: 16}\n",
			[]string{"kernel.prefix_v4: must be 8-32, got 33 (line 1)", "kernel.prefix_v6: must be 32-128, got 16 (line 1)"}},
		{"map sizes", "kernel: {max_bans: 0, max_tracked: -5, max_cidr_rules: 1e9}\n",
			[]string{`kernel.max_cidr_rules: must be a decimal integer, got "1e9" (line 1)`,
				"kernel.max_bans: must be 1-67108864, got 0 (line 1)",
				"kernel.max_tracked: must be 1-67108864, got -5 (line 1)"}},
		{"threshold", "kernel: {syn_rate: {threshold: -1}}\n",
			[]string{"kernel.syn_rate.threshold: must be >= 0 (0 disables kernel auto-bans), got -1 (line 1)"}},
		{"admission and retransmit window", "kernel:\n  syn_rate: {retransmit_window: 3m}\n  admission: {interval: -1s}\n",
			[]string{`kernel.syn_rate.retransmit_window: must be 0-2m0s, got "3m0s" (line 2)`,
				`kernel.admission.interval: must be 0-1h (0: no limit), got "-1s" (line 3)`}},
		{"tiny window", "kernel: {syn_rate: {window: 10us}}\n",
			[]string{`kernel.syn_rate.window: must be at least 1ms, got "10µs" (line 1)`}},
		{"interfaces", "interfaces: [eth0, eth0, '', averyveryverylongname, 'a/b', 7]\n",
			[]string{`interfaces[5]: must be a string, got int "7" (quote it if meant) (line 1)`,
				`interfaces[1]: "eth0": listed twice (line 1)`,
				`interfaces[2]: "": empty interface name (line 1)`,
				`interfaces[3]: "averyveryverylongname": interface names are at most 15 bytes (line 1)`,
				`interfaces[4]: "a/b": not a valid interface name (line 1)`}},
		{"paths", "pin_root: bpf\nstate_dir: ''\nlogs: {files: [maillog, /a, /a/]}\n",
			[]string{`logs.files[0]: "maillog": must be an absolute path (line 3)`,
				`logs.files[2]: "/a/": listed twice (line 3)`,
				`pin_root: "bpf": must be an absolute path (line 1)`,
				`state_dir: "": empty path (line 2)`}},
		{"metrics", "metrics: {listen: 'metrics.example:9931'}\n",
			[]string{`metrics.listen: "metrics.example:9931": host "metrics.example": must be an IP address or localhost (line 1)`}},
		{"guard rails", "guard_rails: {widest_ban_v4: 33, widest_ban_v6: -1}\n",
			[]string{`guard_rails.widest_ban_v4: must be 0-32, got 33 (line 1)`,
				`guard_rails.widest_ban_v6: must be 0-128, got -1 (line 1)`}},
		{"metrics port", "metrics: {listen: '127.0.0.1:http'}\n",
			[]string{`metrics.listen: "127.0.0.1:http": port "http": must be 1-65535 (line 1)`}},
		{"metrics no port", "metrics: {listen: 127.0.0.1}\n",
			[]string{`metrics.listen: "127.0.0.1": want host:port, e.g. 127.0.0.1:9931 or [::1]:9931 (line 1)`}},
		{"wrong shapes", "kernel: [1]\nlogs: {files: /var/log/maillog}\ndetect: [x]\nlog: 3\n",
			[]string{`kernel: must be a mapping, got a list (line 1)`,
				`logs.files: must be a list, got "/var/log/maillog" (line 2)`,
				`detect: must be a mapping, got a list (line 3)`,
				`log: must be a mapping, got "3" (line 4)`}},
		{"null scalar", "kernel: {monitor: }\n", []string{"kernel.monitor: missing value (line 1)"}},
		{"top level list", "- a\n", []string{`must be a mapping, got a list (line 1)`}},
		{"anchors", "kernel: &k {monitor: true}\n", []string{`kernel: YAML anchors and aliases are not supported (line 1)`}},
		{"two documents", "xdp_mode: auto\n---\nxdp_mode: native\n",
			[]string{`more than one YAML document (a line "---"); xdpguard reads one (line 2)`}},
		{"syntax", "kernel: [\n", []string{"line 1: did not find expected node content"}},
		{"tab indent", "kernel:\n\tmonitor: true\n", []string{"line 2: found character that cannot start any token"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if c != nil {
				t.Errorf("returned a config with an error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *Error", err)
			}
			var got []string
			for _, p := range ce.Problems {
				got = append(got, p.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestValidateAfterFlags(t *testing.T) {
	c := Default()
	c.Interfaces = append(c.Interfaces, "eth/1")
	c.Allow = append(c.Allow, netip.PrefixFrom(netip.MustParseAddr("192.0.2.1"), 24))
	c.StateDir = "relative"
	err := c.Validate()
	want := `interfaces[0]: "eth/1": not a valid interface name
allow[0]: 192.0.2.1/24: host bits set (the network is 192.0.2.0/24)
state_dir: "relative": must be an absolute path`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xdpguard.yaml")
	if err := os.WriteFile(path, []byte("interfaces: [eth1]\nkernel: {ban_scope: x}\nlog: {level: loud}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	want := path + `: kernel.ban_scope: must be one of all, ports, got "x" (line 2)` + "\n" +
		path + `: log.level: must be one of debug, info, warn, error, got "loud" (line 3)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("interfaces: [eth1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || len(c.Interfaces) != 1 {
		t.Errorf("good file: %+v, %v", c, err)
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("xdpguard.example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("kernel: {ports: [1, 2], syn_rate: {threshold: 3, window: 1s}}\nallow: [1.2.3.4, '::/0']\n"))
	f.Add([]byte("detect: {a: [1, {b: c}]}\nmetrics: {listen: ':1'}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var ce *Error
			if c != nil || !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("bad error result: %v, %v", c, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
	})
}

// The file's kernel defaults are the datapath's, and Settings maps every
// field back: an absent key and an absent file mean the same program.
func TestKernelDefaultsAreTheDatapaths(t *testing.T) {
	if got, want := Default().Kernel.Settings(), datapath.DefaultSettings(); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults through the file: %+v\ndatapath's: %+v", got, want)
	}
}
