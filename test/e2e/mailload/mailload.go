// Package mailload is the traffic of the end-to-end test: the slot-holding
// attack of the bots xdpguard exists for, and a probe that logs in as real
// users and times it. Both run as child processes entered into the client
// network namespace (see Main), so every socket they open lives there.
package mailload

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol ports. The attack and the probe both use the plain ports; the
// probe upgrades with STARTTLS before it authenticates. (A probe on
// 993/995 measures something else: a Dovecot 2.3 login process that has
// room for one client serves its first listener first, so while 143 has
// a queue, 993 is never served at all.)
const (
	PortPOP3  = 110
	PortIMAP  = 143
	PortPOP3S = 995
	PortIMAPS = 993
)

// Servers holds the server's address in each family; a source dials the
// one of its own family.
type Servers struct {
	V4, V6 netip.Addr
}

func (s Servers) For(src netip.Addr) netip.Addr {
	if src.Is4() {
		return s.V4
	}
	return s.V6
}

// AttackConfig describes a slot-holding attack.
type AttackConfig struct {
	Servers Servers
	Sources []netip.Addr
	// Conns is the number of connections held at once, half POP3 and
	// half IMAP, spread evenly over Sources.
	Conns int
	// DialTimeout bounds a connect whose SYNs are dropped (a banned
	// source), after which the worker tries again at once.
	DialTimeout time.Duration
	// Hold, if positive, closes each connection after that long (the slow
	// attacker); zero holds until the server drops it.
	Hold time.Duration
	// Pause waits between connections (the slow attacker); zero
	// reconnects at once, as the bots do.
	Pause time.Duration
}

// AttackStats counts what the attack saw.
type AttackStats struct {
	Dials       int64 `json:"dials"`
	Connected   int64 `json:"connected"`
	Banners     int64 `json:"banners"`
	ServerDrops int64 `json:"server_drops"` // EOF or reset from the server
	DialErrors  int64 `json:"dial_errors"`  // refused, reset or timed out
	// SourcesConnected is how many distinct sources got at least one
	// connection through.
	SourcesConnected int `json:"sources_connected"`
}

// Attack holds cfg.Conns connections until ctx ends. Each worker connects,
// reads the banner, sends `USER someone` on POP3 and nothing on IMAP, then
// waits for the server to drop it, and reconnects at once.
func Attack(ctx context.Context, cfg AttackConfig) AttackStats {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 3 * time.Second
	}
	var st AttackStats
	var seen sync.Map
	var wg sync.WaitGroup
	for i := 0; i < cfg.Conns; i++ {
		src := cfg.Sources[(i/2)%len(cfg.Sources)]
		port := [2]int{PortPOP3, PortIMAP}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			bot{servers: cfg.Servers, src: src, port: port, dialTimeout: cfg.DialTimeout, pause: cfg.Pause, st: &st, seen: &seen}.
				run(ctx, func(c net.Conn) bool { return holdSlot(ctx, c, port, cfg.Hold, &st) })
		}()
	}
	wg.Wait()
	seen.Range(func(any, any) bool { st.SourcesConnected++; return true })
	return st
}

// bot is one attacking connection slot: it dials from src, plays a
// connection, and dials again as soon as the connection ends.
type bot struct {
	servers     Servers
	src         netip.Addr
	port        int
	dialTimeout time.Duration
	pause       time.Duration
	st          *AttackStats
	seen        *sync.Map
}

// run dials until ctx ends; play handles a connection and reports whether
// the server ended it.
func (b bot) run(ctx context.Context, play func(net.Conn) bool) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: b.src.AsSlice()}, Timeout: b.dialTimeout}
	dst := netip.AddrPortFrom(b.servers.For(b.src), uint16(b.port)).String()
	for ctx.Err() == nil {
		atomic.AddInt64(&b.st.Dials, 1)
		c, err := d.DialContext(ctx, "tcp", dst)
		if err != nil {
			atomic.AddInt64(&b.st.DialErrors, 1)
			// A refused connect returns at once; without a pause a
			// worker would spin. 50 ms is still "at once" to Dovecot.
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		atomic.AddInt64(&b.st.Connected, 1)
		b.seen.Store(b.src, true)
		if play(c) {
			atomic.AddInt64(&b.st.ServerDrops, 1)
		}
		sleep(ctx, b.pause)
	}
}

// holdSlot plays one bot connection; it reports whether the server ended it.
func holdSlot(ctx context.Context, c net.Conn, port int, hold time.Duration, st *AttackStats) bool {
	defer c.Close()
	done := make(chan struct{})
	defer close(done)
	var clientClosed atomic.Bool
	go func() {
		var timer <-chan time.Time
		if hold > 0 {
			timer = time.After(hold)
		}
		select {
		case <-ctx.Done():
		case <-timer:
		case <-done:
			return
		}
		clientClosed.Store(true)
		c.Close()
	}()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return !clientClosed.Load()
	}
	atomic.AddInt64(&st.Banners, 1)
	if port == PortPOP3 {
		if _, err := io.WriteString(c, "USER someone\r\n"); err != nil {
			return !clientClosed.Load()
		}
	}
	// Hold the slot: read whatever comes until the server hangs up.
	_, _ = io.Copy(io.Discard, r)
	return !clientClosed.Load()
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// User is a legitimate mailbox owner and the address they log in from.
type User struct {
	Name, Pass string
	Src        netip.Addr
}

// ProbeConfig describes the login probe.
type ProbeConfig struct {
	Servers  Servers
	Users    []User
	Interval time.Duration // a login starts every Interval, users in turn
	Deadline time.Duration // a login not done by then has failed
	// ServerName and RootCAs verify the server's generated certificate.
	ServerName string
	RootCAs    *x509.CertPool
	// Count, if positive, stops after that many attempts.
	Count int
	// Class names the users in the results ("returning", "new", ...).
	Class string `json:"class,omitempty"`
	// Protos are the protocols the logins cycle through: by default IMAP
	// and POP3, each user alternating on its own turns; with ProtoByAttempt,
	// one attempt after the other (for users who log in once each).
	Protos         []string `json:"protos,omitempty"`
	ProtoByAttempt bool     `json:"proto_by_attempt,omitempty"`
}

func (cfg ProbeConfig) proto(k int) string {
	ps := cfg.Protos
	if len(ps) == 0 {
		ps = []string{"imap", "pop3"}
	}
	if cfg.ProtoByAttempt {
		return ps[k%len(ps)]
	}
	// k/n counts the user's own turns, so each user alternates.
	return ps[(k/len(cfg.Users))%len(ps)]
}

// Attempt is one probe login.
type Attempt struct {
	Class   string        `json:"class,omitempty"`
	Start   time.Time     `json:"start"`
	User    string        `json:"user"`
	Src     netip.Addr    `json:"src"`
	Proto   string        `json:"proto"` // "imap" or "pop3"
	OK      bool          `json:"ok"`
	Latency time.Duration `json:"latency_ns"` // connect to "logged in", or to the failure
	Err     string        `json:"err,omitempty"`
}

// Probe starts a login every cfg.Interval, rotating through the users and
// alternating IMAP and POP3 per user, and calls report with each result.
// Logins overlap: a slow one does not delay the next tick, as a real user's
// mail client would not wait for another user's.
func Probe(ctx context.Context, cfg ProbeConfig, report func(Attempt)) {
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := len(cfg.Users)
	for k := 0; cfg.Count <= 0 || k < cfg.Count; k++ {
		u := cfg.Users[k%n]
		proto := cfg.proto(k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := Login(ctx, cfg, u, proto)
			mu.Lock()
			defer mu.Unlock()
			report(a)
		}()
		if cfg.Count > 0 && k+1 == cfg.Count {
			break
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
	}
	wg.Wait()
}

// Login logs u in with proto over STARTTLS and logs out.
func Login(ctx context.Context, cfg ProbeConfig, u User, proto string) Attempt {
	a := Attempt{Class: cfg.Class, Start: time.Now(), User: u.Name, Src: u.Src, Proto: proto}
	err := login(ctx, cfg, u, proto)
	a.Latency = time.Since(a.Start)
	a.OK = err == nil
	if err != nil {
		a.Err = err.Error()
	}
	return a
}

func login(ctx context.Context, cfg ProbeConfig, u User, proto string) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	raw, err := dial(ctx, cfg, u, proto)
	if err != nil {
		return err
	}
	defer raw.Close()
	tlsCfg := &tls.Config{ServerName: cfg.ServerName, RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if proto == "imap" {
		c, _, err := imapLogin(raw, tlsCfg, u)
		if err == nil {
			io.WriteString(c, "a2 LOGOUT\r\n")
		}
		return err
	}
	return pop3Login(raw, tlsCfg, u)
}

// dial connects u to proto's plain port; the connection's deadline is
// ctx's.
func dial(ctx context.Context, cfg ProbeConfig, u User, proto string) (net.Conn, error) {
	port := PortIMAP
	if proto == "pop3" {
		port = PortPOP3
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: u.Src.AsSlice()}}
	raw, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(cfg.Servers.For(u.Src), uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	dl, _ := ctx.Deadline()
	raw.SetDeadline(dl)
	return raw, nil
}

// imapLogin upgrades raw with STARTTLS and logs u in; it returns the
// session, logged in.
func imapLogin(raw net.Conn, tlsCfg *tls.Config, u User) (*tls.Conn, *bufio.Reader, error) {
	r := bufio.NewReader(raw)
	if err := expect(r, "* OK"); err != nil {
		return nil, nil, fmt.Errorf("greeting: %w", err)
	}
	io.WriteString(raw, "a0 STARTTLS\r\n")
	if err := expectTagged(r, "a0"); err != nil {
		return nil, nil, fmt.Errorf("STARTTLS: %w", err)
	}
	c := tls.Client(raw, tlsCfg)
	if err := c.Handshake(); err != nil {
		return nil, nil, fmt.Errorf("TLS: %w", err)
	}
	r = bufio.NewReader(c)
	fmt.Fprintf(c, "a1 LOGIN %s %s\r\n", u.Name, u.Pass)
	if err := expectTagged(r, "a1"); err != nil {
		return nil, nil, fmt.Errorf("LOGIN: %w", err)
	}
	return c, r, nil
}

func pop3Login(raw net.Conn, tlsCfg *tls.Config, u User) error {
	r := bufio.NewReader(raw)
	if err := expect(r, "+OK"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	io.WriteString(raw, "STLS\r\n")
	if err := expect(r, "+OK"); err != nil {
		return fmt.Errorf("STLS: %w", err)
	}
	c := tls.Client(raw, tlsCfg)
	if err := c.Handshake(); err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	r = bufio.NewReader(c)
	fmt.Fprintf(c, "USER %s\r\n", u.Name)
	if err := expect(r, "+OK"); err != nil {
		return fmt.Errorf("USER: %w", err)
	}
	fmt.Fprintf(c, "PASS %s\r\n", u.Pass)
	if err := expect(r, "+OK"); err != nil {
		return fmt.Errorf("PASS: %w", err)
	}
	io.WriteString(c, "QUIT\r\n")
	return nil
}

// expectTagged reads IMAP lines up to the one tagged tag and wants OK.
func expectTagged(r *bufio.Reader, tag string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, tag+" ") {
			if !strings.HasPrefix(line, tag+" OK") {
				return errors.New(strings.TrimSpace(line))
			}
			return nil
		}
	}
}

func expect(r *bufio.Reader, prefix string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, prefix) {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

// LoadCA reads a PEM certificate file into a pool.
func LoadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", path)
	}
	return p, nil
}
