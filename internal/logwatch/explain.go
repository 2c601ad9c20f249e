package logwatch

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Explanation is what `xdpguard logtest --explain LINE` prints: how one
// line was read and why it does or does not count against its source.
type Explanation struct {
	Format Format    `json:"format"`
	Time   time.Time `json:"time,omitzero"`
	Tag    string    `json:"tag"`
	Msg    string    `json:"message"`
	// Rule, Kind and Addr are set when a rule matched.
	Rule     string     `json:"rule,omitempty"`
	Kind     Kind       `json:"event,omitempty"`
	Addr     netip.Addr `json:"ip,omitzero"`
	Weight   int        `json:"weight"`
	Pressure *Pressure  `json:"pressure,omitempty"`
	// Counted: the line adds Weight to its source's score.
	Counted bool   `json:"counted"`
	Why     string `json:"why"`
}

// kindWhy says why a kind weighs what it does by default (doc.go has the
// long form).
var kindWhy = [numKinds]string{
	KindAuthBackend: "a passdb's verdict; the login process's summary line reports the same attempt, and counting both would double it",
	KindConnLimit:   "mail_max_userip_connections is reached by authenticated users (phones, NAT), not attackers",
	KindLogin:       "a successful login is not scored; it withdraws the source's no-auth, tls-failed, probe, conn-limit and process-full events",
}

// Explain runs one line through a fresh engine built from cfg.
func Explain(cfg Config, line []byte) (Explanation, error) {
	e, err := New(cfg)
	if err != nil {
		return Explanation{}, fmt.Errorf("config: %w", err)
	}
	line = bytes.TrimRight(line, "\r\n")
	now := time.Now()
	h := ParseHeader(line, true, now)
	x := Explanation{Format: h.Format, Time: h.Time, Tag: string(h.Tag), Msg: string(h.Msg)}
	if len(line) > cfg.MaxLineBytes {
		x.Why = fmt.Sprintf("longer than max_line_bytes (%d): skipped, because a cut line loses rip=, which Dovecot writes last", cfg.MaxLineBytes)
		return x, nil
	}
	m, ok := e.classify(&h, line, "")
	res := e.ProcessHistory(line, "", now)
	switch {
	case res.Pressure != nil:
		x.Pressure = res.Pressure
		x.Why = fmt.Sprintf("Dovecot's %s of %s was reached: slot pressure, with no source to score", res.Pressure.Limit, res.Pressure.Service)
		return x, nil
	case !ok:
		x.Why = whyMissed(&h)
		return x, nil
	}
	x.Rule, x.Kind, x.Addr, x.Weight = res.Rule, res.Kind, res.Addr, m.weight
	switch {
	case res.Skipped != "":
		x.Why = fmt.Sprintf("not scored: %s (loopback, the host's own addresses and the allowlist are never banned)", res.Skipped)
	case m.weight == 0:
		why := kindWhy[m.kind]
		if why == "" {
			why = "its weight is set to 0"
		}
		x.Why = fmt.Sprintf("weight 0 for %s: %s", m.kind, why)
	default:
		x.Counted = true
		x.Why = fmt.Sprintf("adds %d to the score of %s; %d within %v bans it", m.weight, res.Addr, cfg.Threshold, cfg.Window)
	}
	return x, nil
}

// whyMissed names the first thing that kept a line from matching.
func whyMissed(h *Header) string {
	if h.Format == FormatNone {
		return "unparsed: the line is in no header form logwatch knows (BSD syslog, RFC 3339, RFC 5424, TAI64N, journalctl JSON, Dovecot's log_path)"
	}
	if len(h.Tag) > 0 && !isKnownTag(h.Tag) {
		return fmt.Sprintf("tag %q is neither dovecot nor postfix, and no custom rule matched", h.Tag)
	}
	msg := h.Msg
	for _, svc := range loginServices {
		rest, ok := bytes.CutPrefix(msg, []byte(svc+": "))
		if !ok {
			continue
		}
		for _, lvl := range [...]string{"Info: ", "Warning: "} {
			rest = bytes.TrimPrefix(rest, []byte(lvl))
		}
		head, ok := loginHead(rest)
		if !ok {
			return "a login-process message without user=<...> or rip=: no client address"
		}
		if _, group, ok := lastGroup(head); ok {
			if isEventName(group) {
				if r := loginEvents[string(group)]; r != nil && r.kind == KindNone {
					return fmt.Sprintf("reason %q is recognised and not scored: %s", group, r.why)
				}
			} else if r := matchHuman(group); r != nil && r.kind == KindNone {
				return fmt.Sprintf("reason %q is recognised and not scored: %s", r.human, r.why)
			}
		}
		return fmt.Sprintf("%s reason %q is not a failed, aborted or refused login (see internal/logwatch/COVERAGE.md)", svc, head)
	}
	return "no built-in or custom rule matches the message (see internal/logwatch/COVERAGE.md)"
}

// WriteText prints the explanation for a person.
func (x Explanation) WriteText(w io.Writer) error {
	t := "-"
	if !x.Time.IsZero() {
		t = x.Time.Format(time.RFC3339Nano)
	}
	tag := x.Tag
	if tag == "" {
		tag = "-"
	}
	fmt.Fprintf(w, "header:  %s (time %s, tag %s)\n", x.Format, t, tag)
	fmt.Fprintf(w, "message: %s\n", x.Msg)
	if x.Rule != "" {
		fmt.Fprintf(w, "rule:    %s\nevent:   %s\naddress: %s\nweight:  %d\n", x.Rule, x.Kind, x.Addr, x.Weight)
	} else if x.Pressure != nil {
		fmt.Fprintf(w, "event:   pressure (%s %s %d)\n", x.Pressure.Service, x.Pressure.Limit, x.Pressure.Value)
	} else {
		fmt.Fprintln(w, "rule:    none")
	}
	verdict := "not counted"
	if x.Counted {
		verdict = "counted"
	}
	_, err := fmt.Fprintf(w, "%s: %s\n", verdict, x.Why)
	return err
}
