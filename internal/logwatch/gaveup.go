package logwatch

import "bytes"

// clientLeftAtOnce reports whether a no-auth or probe login line is a
// client that closed the connection within its first second, without a
// word: "Connection closed (no auth attempts in 0 secs)" (2.3), "Login
// aborted: Connection closed (no auth attempts in 0 secs)
// (no_auth_attempts)" (2.4), with or without a read error, and
// "Connection closed (disconnected before auth was ready, waited 0 secs)"
// (the same client, taken while the login process was still connecting
// to the auth process: in the e2e trawler, 40 of a phase's lines, every
// one a real user's). Dovecot counts the seconds from
// accept, so this is what a real client that gave up waiting in a full
// accept queue looks like when Dovecot finally takes the connection: it
// held no login slot, and counting it bans the victims of an attack (a
// webmail front end's timed-out requests). Such lines weigh nothing; they
// are still counted. A bot that holds a slot stays longer, and a flood of
// connect-and-close is the kernel's SYN limit's. Only the head that
// Dovecot writes, before ": user=<", is read.
func clientLeftAtOnce(msg []byte) bool {
	head, ok := loginHead(msg)
	if !ok {
		return false
	}
	// Not "Connection queue full (no auth attempts in 0 secs)": Dovecot
	// cuts its oldest pre-auth connection, and in a flood of idle
	// connections from one address those are 0 s old (the recorded attack
	// in testdata is mostly such lines); a real client logs in within
	// milliseconds of its banner and is not the oldest.
	return bytes.Contains(head, []byte("Connection closed")) &&
		(bytes.Contains(head, []byte("(no auth attempts in 0 secs)")) || bytes.Contains(head, []byte("(disconnected before auth was ready, waited 0 secs)")))
}
