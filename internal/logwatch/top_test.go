package logwatch

import (
	"fmt"
	"testing"
	"time"
)

// TopSources agrees with Sources, cut to n.
func TestTopSources(t *testing.T) {
	e := newEngine(t, func(c *Config) { c.Threshold = 1000 })
	for i := 0; i < 300; i++ {
		for j := 0; j < i%17+1; j++ {
			e.Process(noAuthLine(fmt.Sprintf("198.18.%d.%d", i/200, i%200+1)), "", t0.Add(time.Duration(j)*time.Second))
		}
	}
	all := e.Sources()
	for _, n := range []int{0, 1, 10, 300, 1000} {
		top := e.TopSources(n)
		if len(top) != min(n, len(all)) {
			t.Fatalf("n=%d: %d sources", n, len(top))
		}
		for i, s := range top {
			if s.Score != all[i].Score {
				t.Fatalf("n=%d: #%d has score %d, want %d", n, i, s.Score, all[i].Score)
			}
			if i > 0 && s.Score > top[i-1].Score {
				t.Fatalf("n=%d: not highest first", n)
			}
		}
	}
}
