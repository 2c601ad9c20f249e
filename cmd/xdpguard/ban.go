package main

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/banlist"
	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
)

// defaultManualBan is what `ban` without --for means: long enough to outlast
// a campaign, short enough that a typo does not lock someone out for good.
const defaultManualBan = 24 * time.Hour

func banCommand() *cli.Command {
	return command(&cli.Command{
		Name:      "ban",
		Usage:     "ban an address or prefix in the kernel now",
		ArgsUsage: "ADDR|CIDR",
		Description: "Refused without --force, and nothing is banned: a prefix wider than guard_rails.widest_ban_v4/v6\n" +
			"(/8 and /32 by default), or one covering this host's addresses, an allowed prefix, or the SSH\n" +
			"client of this session ($SSH_CONNECTION). With --from, one refused line refuses the whole file.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "for", Value: defaultManualBan.String(), Usage: "ban `DURATION` (0 = until unbanned)"},
			&cli.StringFlag{Name: "reason", Value: datapath.ReasonManual.String(), Usage: "reason: " + datapath.ReasonNames()},
			&cli.StringFlag{Name: "from", Usage: "read addresses and prefixes from `FILE` (- for stdin); the file is applied whole or not at all"},
			&cli.BoolFlag{Name: "force", Usage: "ban even what the guard rails refuse"},
		},
	}, anyArgs, func(c *cli.Context) error {
		ttl, err := time.ParseDuration(c.String("for"))
		if err != nil || ttl < 0 {
			return fail("--for %q: not a duration like 1h or 30m", c.String("for"))
		}
		reason, err := datapath.ParseReason(c.String("reason"))
		if err != nil {
			return fail("--reason: %v", err)
		}
		ps, err := targets(c)
		if err != nil {
			return err
		}
		cfg, g, err := openPinned(c, "ban")
		if err != nil {
			return err
		}
		defer g.Close()
		r, err := newRails(cfg, g)
		if err != nil {
			return fail("%v", err)
		}
		refused, shadowed := r.check(ps)
		if len(refused) > 0 && !c.Bool("force") {
			return fail("ban refused, nothing banned: %s (--force bans anyway)", summary(refused, 3))
		}
		s, err := g.Settings()
		if err != nil {
			return fail("%v", err)
		}
		eff, err := g.Effective(ps)
		if err != nil {
			return fail("%v", err)
		}
		start := time.Now()
		// The journal's record is encoded while the kernel is written;
		// it is synced only once the kernel holds every ban, so a
		// failed write changes neither.
		var b state.Batch
		encoded := make(chan struct{})
		go func() {
			defer close(encoded)
			banRecords(&b, s, eff, ttl, reason)
		}()
		err = g.BanMany(eff, ttl, datapath.OriginManual, reason)
		<-encoded
		if err != nil {
			return fail("%v", err)
		}
		// On disk before "banned" is printed: a crash after the report
		// loses nothing.
		if err := commit(cfg, &b); err != nil {
			return err
		}
		until := "until unbanned"
		if ttl > 0 {
			until = "for " + ttl.String()
		}
		if len(ps) == 1 {
			fmt.Fprintf(c.App.Writer, "banned %s %s\n", ps[0], until)
		} else {
			fmt.Fprintf(c.App.Writer, "banned %d prefixes %s in %v\n", len(ps), until, time.Since(start).Round(time.Millisecond))
		}
		if len(refused) > 0 {
			warn(c, "banned despite the guard rails (--force): %s", summary(refused, 3))
		}
		if len(shadowed) > 0 {
			warn(c, "%s", summary(shadowed, 3))
		}
		warnUnattached(c, g)
		return nil
	})
}

func unbanCommand() *cli.Command {
	return command(&cli.Command{
		Name:      "unban",
		Usage:     "lift a ban now",
		ArgsUsage: "ADDR|CIDR",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "lift every ban"},
			&cli.StringFlag{Name: "from", Usage: "read addresses and prefixes from `FILE` (- for stdin)"},
		},
	}, anyArgs, func(c *cli.Context) error {
		all := c.Bool("all")
		var ps []netip.Prefix
		var err error
		if all {
			if c.Args().Present() || c.IsSet("from") {
				return fail("unban --all takes no addresses")
			}
		} else if ps, err = targets(c); err != nil {
			return err
		}
		cfg, g, err := openPinned(c, "unban")
		if err != nil {
			return err
		}
		defer g.Close()
		lifted := 1
		switch {
		case all:
			lifted, err = g.UnbanAll()
		case len(ps) == 1:
			err = g.Unban(ps[0]) // a single address must be banned
		default:
			lifted, err = g.UnbanMany(ps) // a list may name some that are not
		}
		if err != nil {
			return fail("%v", err)
		}
		var b state.Batch
		if all {
			b.UnbanAll()
		} else {
			eff, err := g.Effective(ps)
			if err != nil {
				return fail("%v", err)
			}
			b.Unban(eff...)
		}
		if err := commit(cfg, &b); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "lifted %d bans\n", lifted)
		warnUnattached(c, g)
		return nil
	})
}

// targets reads the one ADDR|CIDR argument or the --from list, refusing
// the whole input on any bad entry.
func targets(c *cli.Context) ([]netip.Prefix, error) {
	if from := c.String("from"); from != "" {
		if c.Args().Present() {
			return nil, fail("give either ADDR|CIDR or --from, not both")
		}
		ps, err := banlist.ReadFile(from, c.App.Reader)
		if err != nil {
			return nil, fail("%v", err)
		}
		if len(ps) == 0 {
			return nil, fail("%s: no addresses", from)
		}
		return ps, nil
	}
	if c.Args().Len() != 1 {
		return nil, fail("%s takes exactly one ADDR or CIDR (or --from FILE)", c.Command.Name)
	}
	p, err := banlist.ParsePrefix(c.Args().First())
	if err != nil {
		return nil, fail("%q: %v", c.Args().First(), err)
	}
	return []netip.Prefix{p}, nil
}

// banRecords adds manual bans on eff (the kernel's prefixes) to b, for
// the state journal, so that they survive a reboot even when the daemon
// is not running.
func banRecords(b *state.Batch, s datapath.Settings, eff []netip.Prefix, ttl time.Duration, reason datapath.Reason) {
	now := time.Now()
	like := datapath.Ban{Origin: datapath.OriginManual, Reason: reason, Detector: datapath.DetectorManual, Events: 1, First: now, Last: now}
	if ttl > 0 {
		like.Expires = now.Add(ttl)
	}
	// A prefix wider than the ban granularity is a CIDR rule in the kernel.
	// A big list rarely holds one: then it is recorded as it is, uncopied.
	isWide := func(p netip.Prefix) bool {
		if p.Addr().Is4() {
			return p.Bits() < s.PrefixV4
		}
		return p.Bits() < s.PrefixV6
	}
	exact, wide := eff, []netip.Prefix(nil)
	if slices.ContainsFunc(eff, isWide) {
		exact = nil
		for _, p := range eff {
			if isWide(p) {
				wide = append(wide, p)
			} else {
				exact = append(exact, p)
			}
		}
	}
	b.BanAll(like, exact)
	like.CIDR = true
	b.BanAll(like, wide)
}

// commit syncs a CLI command's change to the state journal.
func commit(cfg config.Config, b *state.Batch) error {
	if err := store(cfg).Commit(b); err != nil {
		return fail("the kernel has the change, but the state journal does not: %v", err)
	}
	return nil
}

// warnUnattached says when the maps are pinned but no interface runs the
// program: the change is real and does nothing yet.
func warnUnattached(c *cli.Context, g *datapath.Guard) {
	ifs, err := g.Interfaces()
	if err != nil {
		return
	}
	for _, it := range ifs {
		if !it.Missing {
			return
		}
	}
	warn(c, "no interface is attached under %s: bans are kept and drop nothing until `xdpguard run` or `xdpguard attach`", g.PinRoot())
}
