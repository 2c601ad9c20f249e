package logwatch

import (
	"bytes"
	"net/netip"
)

// Successful logins are positive evidence: they withdraw a source's
// cancellable events here, and the daemon learns the source as known-good
// from them (package knowngood). A forged success would exempt an attacker
// from the slot-holder detector, so these parsers are as strict as the
// failure parsers: only text the server writes decides the kind.

// isLoginHead reports whether a Dovecot login-process message head (the
// text before ": user=<") is a successful login: "Login" in 2.0-2.3,
// "Logged in" in 2.4.
func isLoginHead(head []byte) bool {
	return string(head) == "Login" || string(head) == "Logged in"
}

// postfixSASLSuccess parses the line Postfix's smtpd writes for a client
// that authenticated:
//
//	4F2Y3k1x2Cz9sW: client=host.example[198.18.5.5], sasl_method=PLAIN, sasl_username=alice
//
// optionally with the client port (smtpd_client_port_logging:
// "client=host[198.18.5.5]:41234"). It reads from the left: the queue ID,
// then "client=", a hostname (Postfix writes "unknown" for a name that is
// not a valid hostname, so it cannot contain '['), the address in
// brackets, and ", sasl_method=" right after. The SASL user name, the only
// client-chosen field, comes last and is never looked at, so it cannot
// forge the address.
func postfixSASLSuccess(msg []byte) (netip.Addr, bool) {
	i := 0
	for i < len(msg) && (isDigit(msg[i]) || msg[i] >= 'A' && msg[i] <= 'Z' || msg[i] >= 'a' && msg[i] <= 'z') {
		i++
	}
	if i == 0 || !bytes.HasPrefix(msg[i:], []byte(": client=")) {
		return netip.Addr{}, false
	}
	addr, rest, ok := postfixClient(msg[i+9:])
	if !ok {
		return netip.Addr{}, false
	}
	if len(rest) > 0 && rest[0] == ':' {
		p := 1
		for p < len(rest) && isDigit(rest[p]) {
			p++
		}
		if p == 1 {
			return netip.Addr{}, false
		}
		rest = rest[p:]
	}
	if !bytes.HasPrefix(rest, []byte(", sasl_method=")) || !bytes.Contains(rest, []byte(", sasl_username=")) {
		return netip.Addr{}, false
	}
	return addr, true
}
