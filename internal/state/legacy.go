package state

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// peekVersion reads the version field alone.
func peekVersion(data []byte) (int, bool) {
	var head struct {
		Version *int `json:"version"`
	}
	if json.Unmarshal(data, &head) != nil || head.Version == nil {
		return 0, false
	}
	return *head.Version, true
}

// decodeV1 reads a version 1 file, in which a ban's reason was a sentence
// whose first word was the kernel's code ("no-auth (rule dovecot-login, 12
// events, offence 1)") and origins were plain strings. Version 1 let
// `ban --reason` store any word; the kernel held "other" for a word it did
// not know, so that is what such a ban becomes.
func decodeV1(data []byte) (State, error) {
	var f struct {
		Bans []struct {
			Prefix  netip.Prefix `json:"prefix"`
			Expires time.Time    `json:"expires"`
			Origin  string       `json:"origin"`
			Reason  string       `json:"reason"`
		} `json:"bans"`
		Offenders []struct {
			Prefix netip.Prefix `json:"prefix"`
			Bans   []time.Time  `json:"bans"`
			Until  time.Time    `json:"until"`
			Reason string       `json:"reason"`
		} `json:"offenders"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return State{}, fmt.Errorf("decode version 1: %w", err)
	}
	st := State{Version: Version, Bans: []datapath.Ban{}, Offenders: []offence.Offender{}}
	for i, b := range f.Bans {
		var origin datapath.Origin
		if err := origin.UnmarshalText([]byte(b.Origin)); err != nil {
			return State{}, fmt.Errorf("bans[%d] (%s): %w", i, b.Prefix, err)
		}
		nb := datapath.Ban{Prefix: b.Prefix, Expires: b.Expires, Origin: origin, Reason: v1Reason(b.Reason)}
		nb.Detector, nb.Events, nb.Offence = v1Evidence(b.Reason)
		st.Bans = append(st.Bans, nb)
	}
	for _, o := range f.Offenders {
		off := offence.Offender{Prefix: o.Prefix, Bans: o.Bans, Until: o.Until}
		if o.Reason != "" {
			off.Reason = v1Reason(o.Reason)
		}
		st.Offenders = append(st.Offenders, off)
	}
	if err := st.check(); err != nil {
		return State{}, err
	}
	st.fill()
	return st, nil
}

func v1Reason(sentence string) datapath.Reason {
	code, _, _ := strings.Cut(sentence, " ")
	r, err := datapath.ParseReason(code)
	if err != nil {
		return datapath.ReasonOther
	}
	return r
}

// v1Evidence recovers what version 1's log-ban sentence said:
// "no-auth (rule dovecot-login, 12 events, offence 1)".
func v1Evidence(sentence string) (detector string, events, offence int) {
	_, rest, ok := strings.Cut(sentence, " (rule ")
	if !ok {
		return "", 0, 0
	}
	rule, rest, _ := strings.Cut(rest, ", ")
	fmt.Sscanf(rest, "%d events, offence %d)", &events, &offence)
	return rule, events, offence
}
