package config

import (
	"strings"
	"testing"
)

func TestLoginSlotSettingsValidation(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"known_good: {retention: 10m}", `known_good.retention: must be 1h0m0s-87600h, got "10m0s" (line 1)`},
		{"known_good: {max_entries: -1}", "known_good.max_entries: must be 0-131072 (0 turns learning off), got -1 (line 1)"},
		{"slot_holders: {pressure: {evict: {enabled: true, grace: 10ms}}}", `slot_holders.pressure.evict.grace: must be 200ms-1m, got "10ms" (line 1)`},
		{"slot_holders: {pressure: {evict: {fresh_rate: -1}}}", "slot_holders.pressure.evict.fresh_rate: must be 0-100000 new sources a second (0: no limit), got -1 (line 1)"},
		{"slot_holders: {pressure: {evict: {refuse: 25h}}}", `slot_holders.pressure.evict.refuse: must be 0-24h (0 turns it off), got "25h0m0s" (line 1)`},
		{"slot_holders: {pressure: {evict: {refuse: -1s}}}", `slot_holders.pressure.evict.refuse: must be 0-24h (0 turns it off), got "-1s" (line 1)`},
		{"ipv6_escalation: {prefix: 16}", "ipv6_escalation.prefix: must be 32-127, got 16 (line 1)"},
		{"ipv6_escalation: {offenders: 1}", "ipv6_escalation.offenders: must be >= 2, got 1 (line 1)"},
		{"ipv6_escalation: {window: 0s}", `ipv6_escalation.window: must be > 0 and at most 24h, got "0s" (line 1)`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got  %v\n want %s", c.yaml, err, c.want)
		}
	}
	// Switched off, their other values are not checked.
	for _, ok := range []string{
		"slot_holders: {pressure: {evict: {enabled: false, grace: 0s}}}",
		"ipv6_escalation: {enabled: false, offenders: 0}",
		"kernel: {prefix_v6: 48}", // escalation to /48 then does nothing; still valid
		"known_good: {max_entries: 0}",
		"slot_holders: {pressure: {evict: {refuse: 0s}}}",
	} {
		if _, err := Parse([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// A priority port must not be protected or shared, and a map in the file
// replaces the default one: {} turns steering off.
func TestPriorityPorts(t *testing.T) {
	c, err := Parse([]byte("known_good: {priority_ports: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.KnownGood.PriorityPorts) != 0 {
		t.Fatalf("{} left %v", c.KnownGood.PriorityPorts)
	}
	_, err = Parse([]byte("known_good: {priority_ports: {143: 110, 110: 10000, 993: 10000}}\n"))
	for _, want := range []string{"known_good.priority_ports.143: must be a port that kernel.ports does not protect, got 110",
		"known_good.priority_ports.993: port 10000 is already known_good.priority_ports.110"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}
