package daemon

import (
	"bytes"
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// A user-name trawler sends USER with a new name every few seconds and
// never a password. Dovecot logs the last name of each connection when it
// ends without authentication ("Disconnected (no auth attempts ...):
// user=<name>"). A source that gets trawlUsers distinct names into such
// lines within the log layer's window, and never logs in, is banned. A
// real user's client sends one name, and a mistyped password is a failed
// authentication, not a no-auth line; a NAT office's many users have
// logged in, so they are known-good and not counted.
const trawlUsers = 5

// maxTrawlSources bounds the sources tracked at once; beyond it new ones
// are not tracked until the window frees room (eviction and the log
// layer's own scores still apply to them).
const maxTrawlSources = 1 << 16

type trawlSource struct {
	names       map[uint64]bool
	first, last time.Time
}

type trawlState struct {
	seed    maphash.Seed
	sources map[netip.Prefix]*trawlSource
}

// userName returns the user name of a Dovecot login line: the text after
// "user=<" and before the ">, " that ends the field. The name is the
// client's; it may contain ">, " itself, so the field is taken to end at
// the last ">, " before the real rip (the last " rip="). Only distinctness
// is used, so a forged name only splits or merges an attacker's own
// names.
func userName(line []byte) []byte {
	i := bytes.Index(line, []byte(": user=<"))
	j := bytes.LastIndex(line, []byte(" rip="))
	if i < 0 || j < i {
		return nil
	}
	// Up to and including rip's leading space: "NAME>, [method=X, ]".
	// Nothing Dovecot writes between the name and rip holds ">, ".
	field := line[i+8 : j+1]
	k := bytes.LastIndex(field, []byte(">, "))
	if k < 0 {
		return nil
	}
	return field[:k]
}

// trawlRule is the detector a trawler's ban names.
const trawlRule = "user-trawl"

// trawl counts the user names of a no-auth line and bans the source once
// it has tried trawlUsers distinct ones.
func (d *Daemon) trawl(r logwatch.Result, line []byte) {
	if d.tr.sources == nil {
		d.tr.seed = maphash.MakeSeed()
		d.tr.sources = map[netip.Prefix]*trawlSource{}
	}
	if r.Kind != logwatch.KindNoAuth {
		return
	}
	// A source that logged in is known-good from then on, and prefixOf
	// leaves it out: "without ever authenticating".
	p, ok := d.prefixOf(r.Addr)
	if !ok {
		return
	}
	name := userName(line)
	if len(name) == 0 {
		return
	}
	s := d.tr.sources[p]
	if s != nil && r.Time.Sub(s.last) > d.cfg.Detect.Window {
		s = nil // the window passed: start over
	}
	if s == nil {
		if len(d.tr.sources) >= maxTrawlSources {
			return
		}
		s = &trawlSource{names: map[uint64]bool{}, first: r.Time}
		d.tr.sources[p] = s
	}
	s.names[maphash.Bytes(d.tr.seed, name)] = true
	s.last = r.Time
	if len(s.names) < trawlUsers {
		return
	}
	delete(d.tr.sources, p)
	if _, isBanned, _ := d.guard.BanOf(p.Addr()); isBanned {
		return
	}
	dur, offence := d.engine.History().Record(p, r.Time, datapath.ReasonNoAuth, trawlRule)
	d.pending = append(d.pending, pendingBan{arrival: r.Time, dec: &logwatch.Decision{
		Prefix: p, Duration: dur, Reason: datapath.ReasonNoAuth, Rule: trawlRule, Events: trawlUsers,
		First: s.first, Time: r.Time, Offence: offence}})
}

// expireTrawl forgets sources quiet for longer than the window.
func (d *Daemon) expireTrawl(now time.Time) {
	for p, s := range d.tr.sources {
		if now.Sub(s.last) > d.cfg.Detect.Window {
			delete(d.tr.sources, p)
		}
	}
}
