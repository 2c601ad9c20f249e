package sockets

// Listening sockets, and taking hold of one that another process owns.
//
// Priority steering (internal/bpf/priority.c) hands a known-good source's
// new connection to Dovecot's priority listener. The kernel's socket map
// wants a descriptor for that socket, and only Dovecot has one: the daemon
// finds the socket by its address (inet_diag, LISTEN state), finds a
// process that holds it (socket:[INODE] in /proc/PID/fd), and duplicates
// that descriptor with pidfd_getfd(2) (Linux 5.6). The map then holds the
// socket itself; when Dovecot closes it (a restart), the kernel drops it
// from the map, and steering stops until the daemon finds the new one.

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Listener is a listening TCP socket.
type Listener struct {
	Addr netip.AddrPort
	// Inode is the socket's inode, the key to find who holds it.
	Inode uint32
	// Waiting is the accept queue's length: connections the server has
	// not taken yet.
	Waiting int
}

// diagSrc is the offset of idiag_src in struct inet_diag_msg.
const diagSrc = 8

// Listeners lists the listening TCP sockets on localPorts, both families.
func Listeners(ctx context.Context, localPorts []uint16) ([]Listener, error) {
	var out []Listener
	err := dumpPorts(ctx, localPorts, query{states: 1 << tcpListen}, true, func(msg []byte) {
		var a netip.Addr
		if msg[diagFamily] == unix.AF_INET {
			a = netip.AddrFrom4([4]byte(msg[diagSrc : diagSrc+4]))
		} else {
			a = netip.AddrFrom16([16]byte(msg[diagSrc : diagSrc+16]))
		}
		out = append(out, Listener{
			Addr:    netip.AddrPortFrom(a, binary.BigEndian.Uint16(msg[diagSport:])),
			Inode:   binary.NativeEndian.Uint32(msg[diagInode:]),
			Waiting: int(binary.NativeEndian.Uint32(msg[diagRqueue:])),
		})
	})
	return out, err
}

// DupSockets returns a descriptor of its own for each socket inode it can
// find a holder of under proc (normally "/proc"), in one walk of the
// process table: a server's listening sockets are held by its master and
// by each of its login processes, which come and go, so a holder that
// exits meanwhile is passed over for the next. The caller closes them.
func DupSockets(proc string, inodes []uint32) (map[uint32]*os.File, error) {
	want := map[string]uint32{}
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(uint64(ino), 10)+"]"] = ino
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("sockets: %w", err)
	}
	out := map[uint32]*os.File{}
	for _, e := range ents {
		if len(out) == len(want) {
			break
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(proc, e.Name(), "fd"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(proc, e.Name(), "fd", fd.Name()))
			ino, ok := want[l]
			if err != nil || !ok || out[ino] != nil {
				continue
			}
			n, _ := strconv.Atoi(fd.Name())
			if f, err := dupFrom(pid, n); err == nil {
				out[ino] = f
			}
		}
	}
	return out, nil
}

func dupFrom(pid, fd int) (*os.File, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("sockets: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	n, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return nil, fmt.Errorf("sockets: pidfd_getfd %d of pid %d: %w", fd, pid, err)
	}
	return os.NewFile(uintptr(n), fmt.Sprintf("socket of pid %d", pid)), nil
}
