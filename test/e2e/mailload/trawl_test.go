package mailload

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePOP3 greets, records every line, and hangs up after two commands,
// as Dovecot does after three refused plaintext USERs.
type fakePOP3 struct {
	mu       sync.Mutex
	lines    []string
	open     map[netip.Addr]int
	maxOpen  map[netip.Addr]int
	accepted map[netip.Addr]int
}

func (f *fakePOP3) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		f.mu.Lock()
		f.open[src]++
		f.accepted[src]++
		f.maxOpen[src] = max(f.maxOpen[src], f.open[src])
		f.mu.Unlock()
		go func() {
			defer func() {
				f.mu.Lock()
				f.open[src]--
				f.mu.Unlock()
				c.Close()
			}()
			c.Write([]byte("+OK ready\r\n"))
			r := bufio.NewReader(c)
			for i := 0; i < 2; i++ {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				f.mu.Lock()
				f.lines = append(f.lines, strings.TrimSpace(line))
				f.mu.Unlock()
			}
		}()
	}
}

func TestTrawlOneConnectionPerSourceNewNamesReconnects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f := &fakePOP3{open: map[netip.Addr]int{}, maxOpen: map[netip.Addr]int{}, accepted: map[netip.Addr]int{}}
	go f.serve(l)
	port := l.Addr().(*net.TCPAddr).Port
	// Two sources: with sources alternating in pairs, both play POP3.
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st := Trawl(ctx, TrawlConfig{Servers: Servers{V4: netip.MustParseAddr("127.0.0.1")}, Sources: srcs,
		Every: 100 * time.Millisecond, ports: [2]int{port, port}})

	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]bool{}
	for _, line := range f.lines {
		name, ok := strings.CutPrefix(line, "USER ")
		if !ok {
			t.Fatalf("a POP3 trawler sent %q, want only USER", line)
		}
		if seen[name] {
			t.Fatalf("user name %q guessed twice; each guess must be new", name)
		}
		seen[name] = true
	}
	for _, s := range srcs {
		if f.maxOpen[s] != 1 {
			t.Errorf("source %s held up to %d connections at once, want exactly 1", s, f.maxOpen[s])
		}
		// Dropped after two commands (about 0.1 s), it must reconnect at
		// once: many connections in 3 s, not one.
		if f.accepted[s] < 4 {
			t.Errorf("source %s connected %d times in 3 s; a dropped trawler must reconnect at once", s, f.accepted[s])
		}
	}
	if st.SourcesConnected != len(srcs) || st.ServerDrops == 0 || st.Connected < 8 {
		t.Errorf("stats %+v: want both sources connected, server drops counted", st)
	}
}
