package harness

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestPoller(t *testing.T) {
	var n atomic.Int32
	p := StartPoller(time.Millisecond, func() { n.Add(1) })
	for n.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	p.Stop()
	p.Stop() // a second Stop is no error
	after := n.Load()
	time.Sleep(10 * time.Millisecond)
	if n.Load() != after {
		t.Errorf("sampled %d times after Stop", n.Load()-after)
	}
}
