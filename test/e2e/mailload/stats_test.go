package mailload

import (
	"testing"
	"time"
)

func TestSummarizeCountsFailuresInTheRateOnly(t *testing.T) {
	var as []Attempt
	for i := 1; i <= 100; i++ {
		as = append(as, Attempt{OK: true, Latency: time.Duration(i) * time.Millisecond})
	}
	// Failures carry the deadline as latency; they must not drag p99 up.
	for i := 0; i < 25; i++ {
		as = append(as, Attempt{OK: false, Latency: 5 * time.Second})
	}
	s := Summarize(as)
	if s.Attempts != 125 || s.OK != 100 || s.Rate != 0.8 {
		t.Fatalf("attempts/ok/rate = %d/%d/%v, want 125/100/0.8", s.Attempts, s.OK, s.Rate)
	}
	if s.P50 != 50*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Fatalf("p50/p99/max = %v/%v/%v, want 50ms/99ms/100ms (nearest rank)", s.P50, s.P99, s.Max)
	}
}

func TestSummarizeSmallAndEmpty(t *testing.T) {
	if s := Summarize(nil); s.Attempts != 0 || s.Rate != 0 || s.P99 != 0 {
		t.Fatalf("empty: %+v", s)
	}
	s := Summarize([]Attempt{{OK: true, Latency: time.Second}, {OK: true, Latency: 3 * time.Second}})
	if s.P50 != time.Second || s.P99 != 3*time.Second {
		t.Fatalf("two samples: p50 %v p99 %v, want 1s and 3s", s.P50, s.P99)
	}
}
