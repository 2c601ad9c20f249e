package testutil

import (
	"net"
	"sync"
	"testing"
)

// Serve accepts connections on ln until the test ends and hands each one to
// handle. handle runs on the accepting goroutine, so one that talks at
// length starts its own. At cleanup the listener closes, and so does every
// connection it accepted: a connection a test holds open, like a login
// process waiting for USER, does not outlive the test.
func Serve(tb testing.TB, ln net.Listener, handle func(net.Conn)) {
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			handle(c)
		}
	}()
}
