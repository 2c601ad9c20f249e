package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// Events reads kernel auto-ban events. A ring buffer has one consumer: run a
// single reader, in the daemon.
type Events struct {
	rd *ringbuf.Reader
}

// OpenEvents starts reading the event ring buffer.
func (g *Guard) OpenEvents() (*Events, error) {
	rd, err := ringbuf.NewReader(g.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	return &Events{rd: rd}, nil
}

// ErrClosed is returned by Read after Close.
var ErrClosed = errors.New("event reader closed")

// Read blocks until the next ban the kernel issued by itself, the deadline,
// or Close. The kernel reports the ban, not the SYNs: its evidence is the
// one SYN over the threshold then in force (Events = threshold + 1), at the
// ban's time (Last).
func (e *Events) Read() (Ban, error) {
	rec, err := e.rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) {
		return Ban{}, ErrClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return Ban{}, err
	}
	if err != nil {
		return Ban{}, fmt.Errorf("read event: %w", err)
	}
	return decodeEvent(rec.RawSample, newClock())
}

// SetDeadline makes Read return os.ErrDeadlineExceeded after t.
func (e *Events) SetDeadline(t time.Time) { e.rd.SetDeadline(t) }

// Close stops the reader and unblocks Read.
func (e *Events) Close() error { return e.rd.Close() }

func decodeEvent(raw []byte, c clock) (Ban, error) {
	var ev bpf.XdpguardEvent
	if len(raw) < sizeofEvent {
		return Ban{}, fmt.Errorf("short event: %d bytes, want %d", len(raw), sizeofEvent)
	}
	if err := unmarshalEvent(raw, &ev); err != nil {
		return Ban{}, err
	}
	var p netip.Prefix
	switch ev.Family {
	case 4:
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte(ev.Addr[:4])), int(ev.Prefixlen))
	case 6:
		p = netip.PrefixFrom(netip.AddrFrom16(ev.Addr), int(ev.Prefixlen))
	default:
		return Ban{}, fmt.Errorf("event with unknown address family %d", ev.Family)
	}
	return Ban{Prefix: p, Expires: c.wall(ev.ExpiresNs), Origin: OriginKernel, Reason: Reason(ev.Reason),
		Detector: DetectorSYNRate, Events: int(ev.Threshold) + 1, Last: c.wall(ev.TsNs)}, nil
}

var sizeofEvent = binary.Size(bpf.XdpguardEvent{})

func unmarshalEvent(raw []byte, ev *bpf.XdpguardEvent) error {
	_, err := binary.Decode(raw[:sizeofEvent], binary.NativeEndian, ev)
	return err
}
