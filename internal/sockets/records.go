package sockets

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// Offsets in struct conn_rec (internal/bpf/connrec.h), the record in which
// the connection index and the login iterator report a connection;
// TestConnRecLayout checks them against the generated type.
const (
	recFamily   = 0
	recState    = 1
	recLport    = 2
	recRport    = 4
	recInode    = 8
	recIfindex  = 12
	recLaddr    = 16
	recRaddr    = 32
	recCookie   = 48
	recReceived = 56
	recAcked    = 64
	recRecv     = 72
	recAck      = 76
	recSent     = 80
	recUnacked  = 84
	recLen      = 88
	recEndLen   = 32 // struct conn_end
)

// appendRecs decodes conn_rec records into dst; hz is the kernel's
// jiffies a second.
func appendRecs(dst []Conn, recs []byte, hz uint64) []Conn {
	for ; len(recs) >= recLen; recs = recs[recLen:] {
		dst = append(dst, connOfRec(recs[:recLen], hz))
	}
	return dst
}

func connOfRec(r []byte, hz uint64) Conn {
	ne := binary.NativeEndian
	// tcp_info's own conversion (jiffies_to_msecs), to the millisecond.
	ms := func(off int) time.Duration {
		return time.Duration(uint64(ne.Uint32(r[off:]))*1000/hz) * time.Millisecond
	}
	c := Conn{
		Holder: Holder{
			Port:       ne.Uint16(r[recLport:]),
			Idle:       ms(recRecv),
			Received:   ne.Uint64(r[recReceived:]),
			SinceAck:   ms(recAck),
			SinceSent:  ms(recSent),
			Unacked:    ne.Uint32(r[recUnacked:]),
			BytesAcked: ne.Uint64(r[recAcked:]),
		},
		RemotePort: ne.Uint16(r[recRport:]),
		Inode:      ne.Uint32(r[recInode:]),
		Cookie:     ne.Uint64(r[recCookie:]),
		info:       true,
	}
	if r[recFamily] == unix.AF_INET {
		c.Remote = netip.AddrFrom4([4]byte(r[recRaddr : recRaddr+4]))
	} else {
		c.Remote = netip.AddrFrom16([16]byte(r[recRaddr : recRaddr+16])).Unmap()
	}
	// The inet_diag identity that DestroyConns sends: family, state, and
	// the sockid (ports in network order, addresses, interface, cookie).
	c.id[diagFamily] = r[recFamily]
	c.id[1] = r[recState]
	binary.BigEndian.PutUint16(c.id[diagSport:], c.Port)
	binary.BigEndian.PutUint16(c.id[diagSport+2:], c.RemotePort)
	copy(c.id[diagSport+4:], r[recLaddr:recLaddr+16])
	copy(c.id[diagDst:], r[recRaddr:recRaddr+16])
	copy(c.id[diagDst+16:], r[recIfindex:recIfindex+4])
	ne.PutUint64(c.id[diagCookie:], c.Cookie)
	return c
}

var kernelHZ struct {
	once sync.Once
	hz   uint64
	err  error
}

// jiffiesPerSecond is the kernel's HZ, in which tcp_sock keeps its times:
// CONFIG_HZ from the kernel's config where it is readable, else measured
// with sample (a reading of jiffies and CLOCK_MONOTONIC) over 200 ms. HZ
// is one of 100, 250, 300 and 1000, far enough apart for that. It is
// found once per process.
func jiffiesPerSecond(sample func() (bpf.SocketsConnEnd, error)) (uint64, error) {
	k := &kernelHZ
	k.once.Do(func() {
		if k.hz = configHZ(); k.hz == 0 {
			k.hz, k.err = measureHZ(sample)
		}
	})
	return k.hz, k.err
}

// measureHZ counts the jiffies over 200 ms of CLOCK_MONOTONIC, and rounds
// to the nearest HZ that Linux offers.
func measureHZ(sample func() (bpf.SocketsConnEnd, error)) (uint64, error) {
	a, err := sample()
	if err != nil {
		return 0, err
	}
	time.Sleep(200 * time.Millisecond)
	b, err := sample()
	if err != nil {
		return 0, err
	}
	rate := float64(b.Jiffies-a.Jiffies) * 1e9 / float64(b.NowNs-a.NowNs)
	best := uint64(0)
	for _, hz := range []uint64{100, 250, 300, 1000} {
		if best == 0 || abs(rate-float64(hz)) < abs(rate-float64(best)) {
			best = hz
		}
	}
	return best, nil
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// configHZ reads CONFIG_HZ from /proc/config.gz or /boot/config-RELEASE;
// 0 when neither is there.
func configHZ() uint64 {
	var r io.Reader
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if r, err = gzip.NewReader(f); err != nil {
			return 0
		}
	} else {
		var u unix.Utsname
		if unix.Uname(&u) != nil {
			return 0
		}
		f, err := os.Open("/boot/config-" + unix.ByteSliceToString(u.Release[:]))
		if err != nil {
			return 0
		}
		defer f.Close()
		r = f
	}
	s := bufio.NewScanner(r)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CONFIG_HZ="); ok {
			hz, _ := strconv.ParseUint(v, 10, 32)
			return hz
		}
	}
	return 0
}
