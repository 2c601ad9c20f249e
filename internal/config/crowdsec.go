package config

import (
	"net/url"
	"os"
	"strings"
	"time"
)

// CrowdSec links the daemon to a CrowdSec Local API: it pulls decisions as a
// bouncer (with APIKey) and posts its own bans as alerts (with MachineID and
// Password). An empty LAPIURL turns both off.
type CrowdSec struct {
	LAPIURL    string `yaml:"lapi_url"`
	APIKey     string `yaml:"api_key"`
	APIKeyFile string `yaml:"api_key_file"` // instead of api_key: keeps the key out of the file
	// TLS to the LAPI: a CA to trust, a client certificate for mTLS.
	CACertPath         string `yaml:"ca_cert_path"`
	CertPath           string `yaml:"cert_path"`
	KeyPath            string `yaml:"key_path"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// UpdateFrequency is the pull period: how long a new decision may wait
	// before it reaches the kernel.
	UpdateFrequency time.Duration `yaml:"update_frequency"`
	// Which decisions to apply.
	Scopes                  []string `yaml:"scopes"`
	Origins                 []string `yaml:"origins"`
	ScenariosContaining     []string `yaml:"scenarios_containing"`
	ScenariosNotContaining  []string `yaml:"scenarios_not_containing"`
	SupportedDecisionsTypes []string `yaml:"supported_decisions_types"`
	// A machine (cscli machines add) to post alerts as; empty: no push.
	MachineID string `yaml:"machine_id"`
	Password  string `yaml:"password"`
}

func defaultCrowdSec() CrowdSec {
	return CrowdSec{UpdateFrequency: 10 * time.Second, Scopes: []string{"ip", "range"},
		Origins: []string{}, ScenariosContaining: []string{}, ScenariosNotContaining: []string{},
		SupportedDecisionsTypes: []string{"ban"}}
}

// Key returns the bouncer key, from api_key or api_key_file.
func (c CrowdSec) Key() (string, error) {
	if c.APIKeyFile == "" {
		return c.APIKey, nil
	}
	b, err := os.ReadFile(c.APIKeyFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *CrowdSec) validate(ps *problems) {
	if c.LAPIURL == "" {
		return
	}
	if u, err := url.Parse(c.LAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.add("crowdsec.lapi_url", "%q: want http(s)://host:port/", c.LAPIURL)
	}
	switch {
	case c.APIKey != "" && c.APIKeyFile != "":
		ps.add("crowdsec.api_key_file", "set api_key or api_key_file, not both")
	case c.APIKeyFile != "":
		if msg := checkAbs(c.APIKeyFile); msg != "" {
			ps.add("crowdsec.api_key_file", "%q: %s", c.APIKeyFile, msg)
		}
	case c.APIKey == "" && c.MachineID == "":
		ps.add("crowdsec.api_key", "lapi_url is set but neither api_key, api_key_file nor machine_id is: nothing to do")
	}
	for key, p := range map[string]string{"ca_cert_path": c.CACertPath, "cert_path": c.CertPath, "key_path": c.KeyPath} {
		if p != "" {
			if msg := checkAbs(p); msg != "" {
				ps.add("crowdsec."+key, "%q: %s", p, msg)
			}
		}
	}
	if (c.CertPath == "") != (c.KeyPath == "") {
		ps.add("crowdsec.cert_path", "cert_path and key_path go together (mTLS)")
	}
	// Faster than a second only loads the LAPI; slower than an hour is
	// not a bouncer.
	if c.UpdateFrequency < time.Second || c.UpdateFrequency > time.Hour {
		ps.add("crowdsec.update_frequency", "must be 1s-1h, got %q", c.UpdateFrequency.String())
	}
	if len(c.Scopes) == 0 {
		ps.add("crowdsec.scopes", "at least one of ip, range")
	}
	for _, s := range c.Scopes {
		if !strings.EqualFold(s, "ip") && !strings.EqualFold(s, "range") {
			ps.add("crowdsec.scopes", "%q: xdpguard applies ip and range decisions only", s)
		}
	}
	if len(c.SupportedDecisionsTypes) != 1 || !strings.EqualFold(c.SupportedDecisionsTypes[0], "ban") {
		ps.add("crowdsec.supported_decisions_types", "%v: an XDP program can only drop, so [ban]", c.SupportedDecisionsTypes)
	}
	if (c.MachineID == "") != (c.Password == "") {
		ps.add("crowdsec.password", "machine_id and password go together")
	}
}
