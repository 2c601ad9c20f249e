package mailload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// HoldConfig describes mail clients that keep authenticated IMAP
// connections open, as Thunderbird does (one per folder it watches, each
// in IDLE): the NAT office's users. The connections are after
// authentication, so no defence of the login slots may touch them.
type HoldConfig struct {
	ProbeConfig
	// PerUser is how many connections each user keeps open.
	PerUser int `json:"per_user"`
	// Stagger spaces the first connects, as an office's clients start
	// over the morning, not in one burst.
	Stagger time.Duration `json:"stagger"`
	// Retry is the pause after a failed or dropped connection.
	Retry time.Duration `json:"retry"`
}

// Hold keeps cfg.PerUser IDLE connections open for every user until ctx
// ends. Each (re)connection is reported as a login attempt; a held
// connection that the server (or a defence) drops is reported as a failed
// attempt at the time it was lost.
func Hold(ctx context.Context, cfg HoldConfig, report func(Attempt)) {
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	rep := func(a Attempt) {
		mu.Lock()
		defer mu.Unlock()
		report(a)
	}
	n := 0
	for _, u := range cfg.Users {
		for j := 0; j < cfg.PerUser; j++ {
			delay := time.Duration(n) * cfg.Stagger
			n++
			wg.Add(1)
			go func() {
				defer wg.Done()
				sleep(ctx, delay)
				for ctx.Err() == nil {
					holdOne(ctx, cfg, u, rep)
					sleep(ctx, cfg.Retry)
				}
			}()
		}
	}
	wg.Wait()
}

// HeldDropped is the error of an attempt that reports a held,
// authenticated connection ended while the client still wanted it.
const HeldDropped = "held connection dropped"

var errDropped = errors.New(HeldDropped)

// holdOne logs u in, selects INBOX, idles until ctx ends or the
// connection is lost, and reports the login and any loss.
func holdOne(ctx context.Context, cfg HoldConfig, u User, report func(Attempt)) {
	a := Attempt{Class: cfg.Class, Start: time.Now(), User: u.Name, Src: u.Src, Proto: "imap-idle"}
	c, err := idle(ctx, cfg.ProbeConfig, u)
	a.Latency = time.Since(a.Start)
	a.OK = err == nil
	if err != nil {
		a.Err = err.Error()
		report(a)
		return
	}
	report(a)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_, _ = io.Copy(io.Discard, c)
	if ctx.Err() == nil {
		report(Attempt{Class: cfg.Class, Start: time.Now(), User: u.Name, Src: u.Src, Proto: "imap-idle", Err: errDropped.Error()})
	}
}

// idle logs in and enters IDLE on INBOX; the returned session has no
// deadline.
func idle(ctx context.Context, cfg ProbeConfig, u User) (*tls.Conn, error) {
	lctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	raw, err := dial(lctx, cfg, u, "imap")
	if err != nil {
		return nil, err
	}
	// The reads below go by the connection's deadline; ending the run
	// must not wait for it.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	tlsCfg := &tls.Config{ServerName: cfg.ServerName, RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	c, r, err := imapLogin(raw, tlsCfg, u)
	if err == nil {
		io.WriteString(c, "a2 SELECT INBOX\r\n")
		if err = expectTagged(r, "a2"); err != nil {
			err = fmt.Errorf("SELECT: %w", err)
		}
	}
	if err == nil {
		io.WriteString(c, "a3 IDLE\r\n")
		var line string
		if line, err = r.ReadString('\n'); err == nil && !strings.HasPrefix(line, "+") {
			err = fmt.Errorf("IDLE: %s", strings.TrimSpace(line))
		}
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}
