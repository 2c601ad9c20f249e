package daemon

import (
	"context"
	"errors"
	"slices"

	"github.com/xdpguard/xdpguard/internal/sockets"
)

// connSource is where the slot checks read connections. Where the kernel
// allows, the slot holders come from the connection index (only the
// connections that have received at most max_bytes) and the pre-auth
// connections from the login iterator (only those a login process holds):
// neither cost grows with the host's logged-in sessions. Elsewhere an
// inet_diag dump of every protected-port connection and a walk of /proc
// do both. Only the main loop touches it.
type connSource struct {
	index    *sockets.ConnIndex
	login    *sockets.LoginIter
	ports    []uint16 // what index and login were loaded for
	maxBytes uint64   // what index was loaded for
	// Why each could not load, logged once; the fallback is used until a
	// reload changes what they are loaded for.
	indexErr, loginErr error
}

func (s *connSource) close() {
	if s.index != nil {
		s.index.Close()
	}
	if s.login != nil {
		s.login.Close()
	}
	*s = connSource{}
}

// refreshConnSource drops what was loaded for other ports or bytes.
func (d *Daemon) refreshConnSource() {
	s := &d.conns
	if !slices.Equal(s.ports, d.cfg.Kernel.Ports) {
		s.close()
		s.ports = slices.Clone(d.cfg.Kernel.Ports)
	}
	if max := uint64(d.cfg.SlotHolders.MaxBytes); max != s.maxBytes {
		// The index has dropped for good what went over the old bound.
		if s.index != nil {
			s.index.Close()
		}
		s.index, s.indexErr, s.maxBytes = nil, nil, max
	}
}

// holderConns appends to dst the connections among which the slot
// holders are (sockets.HoldersOf): from the index, or a dump.
func (d *Daemon) holderConns(ctx context.Context, dst []sockets.Conn) ([]sockets.Conn, error) {
	d.refreshConnSource()
	s := &d.conns
	if s.index == nil && s.indexErr == nil {
		if s.index, s.indexErr = sockets.NewConnIndex(s.ports, sockets.IndexSize); s.indexErr != nil {
			d.log.Warn("slot holders: dumping every connection instead of the kernel's index", "error", s.indexErr)
		}
	}
	if s.index == nil {
		return sockets.AppendConns(ctx, dst, s.ports)
	}
	out, err := s.index.AppendConns(dst, s.maxBytes)
	if errors.Is(err, sockets.ErrIndexFull) {
		// It stays incomplete until the connections it missed close,
		// which nothing tells: dump until a reload.
		d.log.Warn("slot holders: the kernel's index is full; dumping every connection from now on", "error", err)
		s.index.Close()
		s.index, s.indexErr = nil, err
		return sockets.AppendConns(ctx, out[:len(dst)], s.ports)
	}
	return out, err
}

// preAuthConns lists the connections a login process holds: from the
// kernel's table of login processes, or by joining a dump (conns, when it
// is one: from the index it is not) with the login processes' sockets.
func (d *Daemon) preAuthConns(ctx context.Context, conns []sockets.Conn) ([]sockets.Conn, error) {
	d.refreshConnSource()
	s := &d.conns
	if s.login == nil && s.loginErr == nil {
		if s.login, s.loginErr = sockets.NewLoginIter(sockets.LoginProcesses, s.ports...); s.loginErr != nil {
			d.log.Warn("login sockets: walking /proc instead of the kernel's table of login processes", "error", s.loginErr)
		}
	}
	if s.login != nil {
		pre, err := s.login.AppendConns(nil)
		if !errors.Is(err, sockets.ErrIndexFull) {
			return pre, err
		}
		// A login process it never tracked holds connections it cannot
		// list: walk /proc until a reload.
		d.log.Warn("login sockets: the kernel's table is full; walking /proc from now on", "error", err)
		s.login.Close()
		s.login, s.loginErr = nil, err
	}
	if s.index != nil {
		var err error
		if conns, err = sockets.Conns(ctx, s.ports); err != nil {
			return nil, err
		}
	}
	inodes, err := sockets.LoginInodes("/proc", sockets.LoginProcesses)
	if err != nil {
		return nil, err
	}
	return sockets.PreAuth(conns, inodes), nil
}
