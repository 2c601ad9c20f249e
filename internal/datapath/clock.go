package datapath

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// clock converts the kernel's CLOCK_MONOTONIC deadlines to wall-clock time.
type clock struct {
	mono    uint64
	wallNow time.Time
}

func newClock() clock { return clock{mono: monoNow(), wallNow: time.Now()} }

func (c clock) wall(deadline uint64) time.Time {
	if deadline == 0 {
		return time.Time{}
	}
	return c.wallNow.Add(time.Duration(int64(deadline - c.mono))).Round(time.Millisecond)
}

// monoNow reads the clock bpf_ktime_get_ns reads.
func monoNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return uint64(ts.Nano())
}
