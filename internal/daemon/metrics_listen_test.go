package daemon

import (
	"net"
	"testing"
)

func TestMetricsExposed(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:0", false},
		{"[::1]:0", false},
		{"localhost:0", false},
		{"0.0.0.0:0", true},
		{"[::]:0", true},
	} {
		ln, err := net.Listen("tcp", tc.listen)
		if err != nil {
			t.Logf("%s: %v (skipped)", tc.listen, err)
			continue
		}
		if got := exposed(ln.Addr()); got != tc.want {
			t.Errorf("%s (bound %s): exposed = %v, want %v", tc.listen, ln.Addr(), got, tc.want)
		}
		ln.Close()
	}
}
