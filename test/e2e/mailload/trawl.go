package mailload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// TrawlConfig describes the distributed user-name trawler of issue 11:
// many sources, one connection each, every connection talking every few
// seconds and never authenticating. Each source alone looks like a slow
// user: its SYN rate is one per reconnect, its connection is never quiet,
// and it never fails a password.
type TrawlConfig struct {
	Servers Servers
	Sources []netip.Addr
	// Every is how often each connection sends a new `USER name` (POP3)
	// or `CAPABILITY` (IMAP).
	Every time.Duration
	// DialTimeout bounds a connect whose SYNs are dropped, after which the
	// source tries again at once.
	DialTimeout time.Duration
	// ports replaces PortPOP3 and PortIMAP in unit tests.
	ports [2]int
}

// Trawl runs one connection per source until ctx ends: sources alternate
// in pairs between POP3 and IMAP (the harness interleaves IPv4 and IPv6,
// so each family gets both), and a dropped connection reconnects at once.
func Trawl(ctx context.Context, cfg TrawlConfig) AttackStats {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 3 * time.Second
	}
	if cfg.Every <= 0 {
		cfg.Every = 3 * time.Second
	}
	var st AttackStats
	var seen sync.Map
	var names atomic.Int64
	var wg sync.WaitGroup
	ports := [2]int{PortPOP3, PortIMAP}
	if cfg.ports[0] != 0 {
		ports = cfg.ports
	}
	for i, src := range cfg.Sources {
		kind := [2]int{PortPOP3, PortIMAP}[(i/2)%2]
		port := ports[(i/2)%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the first connects over one period, as sources that
			// are not synchronised would.
			sleep(ctx, time.Duration(i)*cfg.Every/time.Duration(len(cfg.Sources)))
			bot{servers: cfg.Servers, src: src, port: port, dialTimeout: cfg.DialTimeout, st: &st, seen: &seen}.
				run(ctx, func(c net.Conn) bool { return trawlConn(ctx, c, kind, cfg.Every, &names, &st) })
		}()
	}
	wg.Wait()
	seen.Range(func(any, any) bool { st.SourcesConnected++; return true })
	return st
}

// trawlNames are the stems of the guessed user names; a counter makes each
// guess new.
var trawlNames = [...]string{"info", "admin", "sales", "office", "test", "mail", "support", "contact", "webmaster", "jobs"}

// trawlConn plays one trawling connection; it reports whether the server
// ended it.
func trawlConn(ctx context.Context, c net.Conn, port int, every time.Duration, names *atomic.Int64, st *AttackStats) bool {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return ctx.Err() == nil
	}
	atomic.AddInt64(&st.Banners, 1)
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		_, _ = io.Copy(io.Discard, r)
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for k := 0; ; k++ {
		cmd := fmt.Sprintf("t%d CAPABILITY\r\n", k)
		if port == PortPOP3 {
			n := names.Add(1)
			cmd = fmt.Sprintf("USER %s%d\r\n", trawlNames[n%int64(len(trawlNames))], n)
		}
		c.SetWriteDeadline(time.Now().Add(every))
		if _, err := io.WriteString(c, cmd); err != nil {
			return ctx.Err() == nil
		}
		select {
		case <-ctx.Done():
			return false
		case <-gone:
			return ctx.Err() == nil
		case <-tick.C:
		}
	}
}
