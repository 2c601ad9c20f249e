package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"sync"
	"time"
)

// The legitimate client and its server run as child processes of this
// binary, under SCHED_FIFO (chrt) and inside their namespaces (nsenter):
// at normal priority their latency would measure how the scheduler shares
// a CPU with the flood, not the network path.

const rtPrio = "50"

// serveMain accepts and closes connections: a listener that keeps up.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", dutAddr+":110", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp4", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	fmt.Println("ready")
	for {
		c, err := l.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		c.Close()
	}
}

// clientResult is what one client run reports on stdout.
type clientResult struct {
	Attempts int     `json:"attempts"`
	OK       int     `json:"ok"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
}

// clientMain starts a connection every interval for the duration, each
// with its own timeout, so a lost SYN costs one attempt and not the pace.
func clientMain(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	dst := fs.String("dst", dutAddr+":110", "server address")
	every := fs.Duration("every", 20*time.Millisecond, "interval between connection attempts")
	dur := fs.Duration("for", time.Second, "how long to keep starting attempts")
	timeout := fs.Duration("timeout", 2*time.Second, "connect timeout: one SYN retransmission fits")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
		n    int
	)
	tick := time.NewTicker(*every)
	defer tick.Stop()
	end := time.Now().Add(*dur)
	for time.Now().Before(end) {
		n++
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			c, err := net.DialTimeout("tcp4", *dst, *timeout)
			if err != nil {
				return
			}
			lat := time.Since(t0)
			c.Close()
			mu.Lock()
			lats = append(lats, lat)
			mu.Unlock()
		}()
		<-tick.C
	}
	wg.Wait()
	r := clientResult{Attempts: n, OK: len(lats)}
	if len(lats) > 0 {
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		r.P50us = float64(percentile(lats, 50).Nanoseconds()) / 1e3
		r.P99us = float64(percentile(lats, 99).Nanoseconds()) / 1e3
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

// rtCommand runs this binary's subcommand in namespace ns at real-time
// priority.
func rtCommand(ns string, sub string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	a := append([]string{"-f", rtPrio, "nsenter", "--net=" + nsPath(ns), self, sub}, args...)
	return exec.Command("chrt", a...), nil
}

// server is the listener's process in the DUT namespace.
type server struct{ cmd *exec.Cmd }

func startServer(e *env) (*server, error) {
	cmd, err := rtCommand(e.dut, "serve")
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf[:5]) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("server did not come up: %v", err)
	}
	return &server{cmd: cmd}, nil
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// client is one run of the legitimate client in the generator namespace.
type client struct {
	cmd  *exec.Cmd
	out  []byte
	err  error
	done chan struct{}
}

func startClient(e *env, d time.Duration) (*client, error) {
	cmd, err := rtCommand(e.gen, "client", "-for", d.String())
	if err != nil {
		return nil, err
	}
	c := &client{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = os.Stderr
	go func() {
		c.out, c.err = cmd.Output()
		close(c.done)
	}()
	return c, nil
}

func (c *client) wait() (clientResult, error) {
	<-c.done
	var r clientResult
	if c.err != nil {
		return r, fmt.Errorf("legitimate client: %w", c.err)
	}
	if err := json.Unmarshal(c.out, &r); err != nil {
		return r, fmt.Errorf("legitimate client output %q: %w", c.out, err)
	}
	if r.Attempts == 0 {
		return r, errors.New("legitimate client made no attempts")
	}
	return r, nil
}

// kill stops a client that is still running (on SIGINT).
func (c *client) kill() {
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
	}
}
