package crowdsec

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A 1.5+ LAPI streams the body in chunks; the decoder must not care where
// the chunks split.
func TestStreamChunked(t *testing.T) {
	var gotKey, gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotKey, gotQuery = r.Header.Get("X-Api-Key"), r.URL.RawQuery
		fl := w.(http.Flusher)
		for i := 0; i < len(stream14); i += 7 {
			w.Write([]byte(stream14[i:min(i+7, len(stream14))]))
			fl.Flush()
		}
	}))
	defer srv.Close()
	c, err := NewClient(ClientOptions{URL: srv.URL, APIKey: "k3y"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Stream(context.Background(), true, defaultFilter)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.New) != 3 || gotKey != "k3y" || !strings.Contains(gotQuery, "startup=true") || !strings.Contains(gotQuery, "scopes=ip%2Crange") {
		t.Fatalf("new %d, key %q, query %q", len(d.New), gotKey, gotQuery)
	}
}

func TestStreamErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message":"access forbidden"}`, http.StatusForbidden)
	}))
	defer srv.Close()
	c, _ := NewClient(ClientOptions{URL: srv.URL})
	if _, err := c.Stream(context.Background(), false, Filter{}); err == nil || !strings.Contains(err.Error(), "access forbidden") {
		t.Fatalf("err = %v", err)
	}
	for _, u := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := NewClient(ClientOptions{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	if _, err := NewClient(ClientOptions{URL: "https://x/", CACertPath: "/nonexistent"}); err == nil {
		t.Error("missing CA accepted")
	}
}

// A LAPI that stops answering: the bouncer logs the outage once, not per
// retry, reports it in Health, and goes on with deltas when it is back.
func TestBouncerOutage(t *testing.T) {
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Write([]byte(`{"new":[],"deleted":null}`))
	}))
	defer srv.Close()
	c, _ := NewClient(ClientOptions{URL: srv.URL})
	var logs bytes.Buffer
	var logMu sync.Mutex
	b := &Bouncer{Client: c, Filter: defaultFilter, Period: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Delta)
	go b.Run(ctx, out)
	first := <-out
	if !first.Startup {
		t.Fatal("first pull is not a startup pull")
	}
	down.Store(true)
	// Wait for several failed pulls.
	for deadline := time.Now().Add(30 * time.Second); b.Health().Failures < 4; {
		if time.Now().After(deadline) {
			t.Fatal("no failures recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h := b.Health(); h.Up || !strings.Contains(h.LastError, "502") {
		t.Fatalf("health while down: %+v", h)
	}
	down.Store(false)
	if d := <-out; d.Startup {
		t.Fatal("catching up after an outage should be a delta, the LAPI keeps our place")
	}
	if h := b.Health(); !h.Up || h.Failures != 0 {
		t.Fatalf("health after: %+v", h)
	}
	cancel()
	logMu.Lock()
	defer logMu.Unlock()
	if n := strings.Count(logs.String(), "unreachable"); n != 1 {
		t.Errorf("outage logged %d times:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "reachable again"); n != 1 {
		t.Errorf("recovery logged %d times:\n%s", n, logs.String())
	}
}

// Resync turns a pull back into a startup pull, which repairs a delta
// the LAPI lost.
func TestBouncerResync(t *testing.T) {
	var mu sync.Mutex
	var startups []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		startups = append(startups, r.URL.Query().Get("startup"))
		mu.Unlock()
		w.Write([]byte(`{"new":null,"deleted":null}`))
	}))
	defer srv.Close()
	c, _ := NewClient(ClientOptions{URL: srv.URL})
	b := &Bouncer{Client: c, Period: 10 * time.Millisecond, Resync: time.Second, Log: slog.Default()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Delta, 100)
	go b.Run(ctx, out)
	full := 0
	for full < 2 {
		if (<-out).Startup {
			full++
		}
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	// Pulls every 10 ms for a second: some deltas between the two
	// startup pulls, however busy the machine.
	if startups[0] != "true" || !slices.Contains(startups, "false") {
		t.Fatalf("pulls: %v", startups)
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// The pusher logs in, batches, and logs in again when the LAPI refuses its
// token.
func TestPusher(t *testing.T) {
	var mu sync.Mutex
	var logins int
	var batches [][]Alert
	valid := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v1/watchers/login":
			var body map[string]any
			json.NewDecoder(r.Body).Decode(&body)
			if body["machine_id"] != "hostA" || body["password"] != "pw" {
				http.Error(w, "bad login", http.StatusUnauthorized)
				return
			}
			logins++
			valid = "tok" + string(rune('0'+logins))
			json.NewEncoder(w).Encode(map[string]any{"code": 200, "token": valid, "expire": time.Now().Add(time.Hour)})
		case "/v1/alerts":
			if r.Header.Get("Authorization") != "Bearer "+valid {
				http.Error(w, "expired", http.StatusUnauthorized)
				return
			}
			var a []Alert
			if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
				t.Error(err)
			}
			batches = append(batches, a)
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`["1"]`))
		}
	}))
	defer srv.Close()
	c, _ := NewClient(ClientOptions{URL: srv.URL})
	p := &Pusher{Client: c, MachineID: "hostA", Password: "pw", Log: slog.Default(), Batch: 3, Linger: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	for i := 0; i < 5; i++ {
		p.Push(Signal{Prefix: mustPrefix("198.18.5.1/32"), Scenario: ScenarioSlotHolder, Events: 3, Start: now.Add(-time.Second), Stop: now, Duration: time.Hour})
	}
	go p.Run(ctx)
	waitFor(t, func() bool { return p.Stats().Posted == 5 })
	mu.Lock()
	valid = "revoked" // the LAPI forgets the token
	mu.Unlock()
	p.Push(Signal{Prefix: mustPrefix("2001:db8:5::/64"), Scenario: ScenarioSYNRate, Events: 25, Stop: now, Duration: 10 * time.Minute})
	waitFor(t, func() bool { return p.Stats().Posted == 6 })
	mu.Lock()
	defer mu.Unlock()
	if logins != 2 || len(batches) != 3 || len(batches[0]) != 3 || len(batches[1]) != 2 {
		t.Fatalf("logins %d, batches %d", logins, len(batches))
	}
	a := batches[2][0]
	if a.Source.Scope != "Range" || a.Source.Value != "2001:db8:5::/64" || a.EventsCount != 25 || a.Scenario != ScenarioSYNRate ||
		a.Decisions[0].Duration != "10m0s" || a.Decisions[0].Scope != "Range" || a.Decisions[0].Type != "ban" {
		t.Fatalf("alert %+v", a)
	}
	if b := batches[0][0]; b.Source.IP != "198.18.5.1" || b.Source.Scope != "Ip" || b.StartAt >= b.StopAt {
		t.Fatalf("alert %+v", b)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
