package sockets

// Pre-authentication connections
//
// Which accepted connections to Dovecot have not logged in yet? Dovecot
// answers them in a login process (imap-login, pop3-login); once a user
// authenticates, the login process passes the socket to a mail process
// (imap, pop3) over a UNIX socket and closes its own descriptor. So a
// connection is pre-auth exactly while a login process holds a descriptor
// for its socket. LoginIter.AppendConns reads those sockets from the login
// processes' files in the kernel. Where it cannot load, PreAuth joins two
// views of the same socket:
//
//   - inet_diag gives every established connection to the protected ports
//     with idiag_inode, the socket's inode (0 while it waits in the accept
//     queue: no process holds it yet);
//   - /proc/PID/fd of every process whose comm is a login service's
//     binary name links to "socket:[INODE]".
//
// This works in both of Dovecot's login modes: high-security
// (service_count = 1, a process per connection: many processes, one
// client socket each) and high-performance (service_count = 0, client_limit
// connections per process: few processes, many sockets each). Inodes are
// global, so a login process of another network namespace cannot match.
// The listening sockets a login process also holds are not established
// and never match.
//
// One exception: with TLS (993, 995, STARTTLS), the login process keeps
// proxying the decrypted stream to the mail process after login, so an
// authenticated TLS session still looks pre-auth here. The caller must
// only act on pre-auth connections of sources that have never logged in
// (package knowngood): the source of such a session has logged in, so it
// is known-good, and the rule stays right.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// LoginProcesses are the comm names of Dovecot's login processes for the
// protocols xdpguard protects (comm is cut at 15 bytes, which these fit).
var LoginProcesses = []string{"imap-login", "pop3-login"}

// Conn is one established TCP connection to a protected local port. Its
// Holder part carries the remote address, the local port and the
// timings of tcp_info (zero for a connection in the accept queue).
type Conn struct {
	Holder
	RemotePort uint16
	// Inode is the socket's inode; 0 while the connection waits in the
	// server's accept queue (no process has it yet).
	Inode uint32
	// Cookie identifies the socket for its lifetime: a key for tracking
	// one connection across scans, which a 4-tuple is not.
	Cookie uint64
	id     [diagMsgIDEnd]byte
	info   bool // the kernel sent tcp_info: Holder's timings are real
}

// Waiting reports whether the connection is still in the accept queue.
func (c Conn) Waiting() bool { return c.Inode == 0 }

// diagCookie is the offset of idiag_cookie in struct inet_diag_msg.
const diagCookie = 44

// LoginInodes returns the inodes of the sockets that the login processes
// (comm in names) hold, reading proc (normally "/proc"). Processes that
// exit during the walk are skipped.
func LoginInodes(proc string, names []string) (map[uint32]bool, error) {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("sockets: %w", err)
	}
	out := map[uint32]bool{}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join(proc, e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || !isLoginComm(bytes.TrimSuffix(comm, []byte("\n")), names) {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || len(l) < 10 || l[:8] != "socket:[" || l[len(l)-1] != ']' {
				continue
			}
			if n, err := strconv.ParseUint(l[8:len(l)-1], 10, 32); err == nil {
				out[uint32(n)] = true
			}
		}
	}
	return out, nil
}

func isLoginComm(comm []byte, names []string) bool {
	for _, n := range names {
		if string(comm) == n {
			return true
		}
	}
	return false
}

// PreAuth returns the connections of conns that a login process holds
// (inodes from LoginInodes): accepted, and not yet authenticated (or TLS;
// see the package comment above).
func PreAuth(conns []Conn, login map[uint32]bool) []Conn {
	var out []Conn
	for _, c := range conns {
		if c.Inode != 0 && login[c.Inode] {
			out = append(out, c)
		}
	}
	return out
}

// DestroyConns aborts exactly these connections, by identity with the
// cookie, so a socket that closed meanwhile and whose 4-tuple was reused
// is never hit. Connections already gone are not counted and not errors.
func DestroyConns(ctx context.Context, conns []Conn) (int, error) {
	if len(conns) == 0 {
		return 0, nil
	}
	c, done, err := dialCtx(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	targets := make([][]byte, len(conns))
	for i := range conns {
		targets[i] = conns[i].id[:]
	}
	n, err := c.destroy(targets)
	return n, ctxErr(ctx, err)
}
