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

// Event reports a ban the kernel issued by itself.
type Event struct {
	Prefix    netip.Prefix
	Reason    Reason
	At        time.Time
	Expires   time.Time
	Threshold uint32 // the SYN threshold in force when it fired
}

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

// Read blocks until the next event, the deadline, or Close.
func (e *Events) Read() (Event, error) {
	rec, err := e.rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) {
		return Event{}, ErrClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return Event{}, err
	}
	if err != nil {
		return Event{}, fmt.Errorf("read event: %w", err)
	}
	return decodeEvent(rec.RawSample, newClock())
}

// SetDeadline makes Read return os.ErrDeadlineExceeded after t.
func (e *Events) SetDeadline(t time.Time) { e.rd.SetDeadline(t) }

// Close stops the reader and unblocks Read.
func (e *Events) Close() error { return e.rd.Close() }

func decodeEvent(raw []byte, c clock) (Event, error) {
	var ev bpf.XdpguardEvent
	if len(raw) < sizeofEvent {
		return Event{}, fmt.Errorf("short event: %d bytes, want %d", len(raw), sizeofEvent)
	}
	if err := unmarshalEvent(raw, &ev); err != nil {
		return Event{}, err
	}
	var p netip.Prefix
	switch ev.Family {
	case 4:
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte(ev.Addr[:4])), int(ev.Prefixlen))
	case 6:
		p = netip.PrefixFrom(netip.AddrFrom16(ev.Addr), int(ev.Prefixlen))
	default:
		return Event{}, fmt.Errorf("event with unknown address family %d", ev.Family)
	}
	return Event{Prefix: p, Reason: Reason(ev.Reason), At: c.wall(ev.TsNs), Expires: c.wall(ev.ExpiresNs), Threshold: ev.Threshold}, nil
}

var sizeofEvent = binary.Size(bpf.XdpguardEvent{})

func unmarshalEvent(raw []byte, ev *bpf.XdpguardEvent) error {
	_, err := binary.Decode(raw[:sizeofEvent], binary.NativeEndian, ev)
	return err
}
