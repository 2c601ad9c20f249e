package testutil

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Serve's promise to the tests that hold connections: what it accepted is
// closed when the test that asked for it ends, and not before.
func TestServeClosesHeldConnectionsAtCleanup(t *testing.T) {
	var c net.Conn
	t.Run("holder", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		Serve(t, ln, func(c net.Conn) { c.Write([]byte("+OK\r\n")) })
		if c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			t.Fatalf("greeting: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the held connection ended while its test ran: %v", err)
		}
	})
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after its test ended, the held connection read %d bytes, %v; want EOF", n, err)
	}
}
