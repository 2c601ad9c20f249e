package logwatch

import "bytes"

// loginReason is one reason a Dovecot login process gives for a login that
// did not happen, as its source writes it. The table is the single place
// that decides what a login line means; COVERAGE.md lists it with the
// fixture of every version (TestCoverageDoc keeps the two in step).
type loginReason struct {
	// human is the start of the parenthesised reason, e.g. "no auth
	// attempts" in "Disconnected: Inactivity (no auth attempts in 180
	// secs)". Empty when only 2.4's event reason names it.
	human string
	// event is 2.4's event reason, the last parenthesised group of
	// "Login aborted: ... (human) (event)".
	event string
	// kind is what the line yields; KindNone: recognised on purpose and
	// not scored, for the reason in why.
	kind Kind
	// counted: the reason is followed by ", N attempts", the number of
	// failed attempts the line stands for.
	counted bool
	why     string
}

// loginReasons: every reason client_get_extra_disconnect_reason() writes in
// src/login-common/client-common.c at 2.2.36, 2.3.19 and 2.4.1, with the
// 2.0/2.1 wordings still seen in the wild.
var loginReasons = []loginReason{
	{human: "no auth attempts", event: "no_auth_attempts", kind: KindNoAuth},
	{human: "auth failed, ", event: "auth_failed", kind: KindAuthFailed, counted: true},
	{human: "disconnected during TLS handshake", event: "tls_handshake_not_finished", kind: KindTLSFailed},
	{human: "disconnected before auth was ready", event: "auth_process_not_ready", kind: KindProbe},
	{human: "client_limit and process_limit was hit", event: "process_full", kind: KindProcessFull},
	{human: "client didn't finish SASL auth", event: "auth_waiting_client", kind: KindProbe},
	{human: "connection limit reached", event: "connection_limit", kind: KindConnLimit,
		why: "mail_max_userip_connections is hit by authenticated users (phones, NAT)"},
	{human: "tried to use disabled plaintext auth", kind: KindPlaintext},
	{human: "tried to use disallowed plaintext auth", kind: KindPlaintext},
	{human: "tried to use disallowed cleartext auth", event: "cleartext_auth_disabled", kind: KindPlaintext},
	{human: "disconnected before greeting", kind: KindProbe},
	{human: "disconnected while authenticating", kind: KindProbe},
	{human: "disconnected while finishing login", kind: KindProbe},
	{human: "aborted authentication", kind: KindProbe},
	{human: "auth aborted by client", event: "auth_aborted_by_client", kind: KindProbe},
	{human: "tried to use unsupported auth mechanism", event: "invalid_mech", kind: KindProbe},
	{human: "sent invalid base64 in response", event: "invalid_base64", kind: KindProbe},
	{human: "anonymous logins disabled", event: "anonymous_auth_disabled", kind: KindProbe},
	{human: "cert required, client didn't start TLS", event: "client_ssl_not_started", kind: KindTLSFailed},
	{human: "client didn't send a cert", event: "client_ssl_cert_missing", kind: KindTLSFailed},
	{human: "client sent an invalid cert", kind: KindTLSFailed},
	{human: "client sent an untrusted cert", event: "client_ssl_cert_untrusted", kind: KindTLSFailed},
	// A proxy (director, nopassword proxy) learns of a wrong password
	// only from the backend.
	{human: "proxy dest auth failed", kind: KindAuthFailed},
	{human: "proxy dest authentication failure, ", event: "proxy_dest_auth_failed", kind: KindAuthFailed, counted: true},
	// Recognised, not scored.
	{human: "authorization failed", event: "authorization_failed",
		why: "the password was right; a master user or login ACL refused the target user"},
	{human: "auth service reported temporary failure", event: "temp_fail", why: "the server's fault, not the client's"},
	{human: "user disabled", event: "user_disabled", why: "the password was right; the account is disabled"},
	{human: "password expired", event: "password_expired", why: "the password was right; it has expired"},
	{human: "login disabled", event: "login_disabled", why: "the password was right; the passdb said nologin"},
	{human: "auth process communication failure", event: "auth_process_comm_fail", why: "the server's fault, not the client's"},
	{human: "internal failure", event: "internal_failure", why: "the server's fault, not the client's"},
	{human: "auth referral", event: "auth_nologin_referral", why: "a referral to a trusted Dovecot proxy"},
	{human: "The process is shutting down", event: "shutting_down", why: "Dovecot is restarting; every client sees it"},
	{human: "proxy dest connection failed", event: "proxy_dest_connect_failed", why: "the backend is down; the server's fault"},
	{human: "proxy dest internal failure", event: "proxy_dest_internal_failure", why: "the server's fault, not the client's"},
	{human: "proxy dest remote failure", event: "proxy_dest_remote_failure", why: "the backend's fault, not the client's"},
	{human: "proxy dest protocol failure", event: "proxy_dest_protocol_failure", why: "the backend's fault, not the client's"},
	{human: "proxy dest temporary authentication failure", event: "proxy_dest_auth_temp_failed", why: "the backend's fault, not the client's"},
	{human: "proxy dest redirected", event: "proxy_dest_redirected", why: "a redirect, not a failure"},
}

// loginEvents indexes loginReasons by 2.4 event reason.
var loginEvents = func() map[string]*loginReason {
	m := map[string]*loginReason{}
	for i := range loginReasons {
		if r := &loginReasons[i]; r.event != "" {
			m[r.event] = r
		}
	}
	return m
}()

// loginFailedMessages are what client-common-auth.c writes as a whole
// message, "Login failed: <text>" (auth_verbose=yes), for a client that
// tried to authenticate without TLS where TLS is required.
var loginFailedMessages = [...]string{
	"Plaintext authentication disabled", // 2.2, 2.3 client_check_plaintext_auth
	"Cleartext authentication disabled", // 2.4
	"SSL required for authentication",   // 2.3, 2.4 client_auth_begin_common
}

// classifyLoginHead classifies the text a login process writes before
// ": user=<" (or ": rip="), and returns the number of failed attempts it
// stands for. Dovecot writes all of it; nothing the client sends is in it.
func classifyLoginHead(head []byte) (Kind, int) {
	if isLoginHead(head) {
		return KindLogin, 0
	}
	if rest, ok := bytes.CutPrefix(head, []byte("Login failed: ")); ok {
		for _, m := range loginFailedMessages {
			if string(rest) == m {
				return KindPlaintext, 0
			}
		}
		return KindNone, 0
	}
	if bytes.HasPrefix(head, []byte("Maximum number of connections from user+IP exceeded")) ||
		bytes.HasPrefix(head, []byte("Disconnected: Maximum number of connections from user+IP exceeded")) {
		return KindConnLimit, 0
	}
	// The reason is the last parenthesised group; 2.4 adds the event
	// reason after it. Neither contains a parenthesis.
	pre, group, ok := lastGroup(head)
	if !ok {
		return KindNone, 0
	}
	var r *loginReason
	if isEventName(group) {
		r = loginEvents[string(group)]
		if r == nil {
			return KindNone, 0
		}
		if pre, group, ok = lastGroup(pre); !ok {
			return KindNone, 0
		}
	} else {
		r = matchHuman(group)
		if r == nil {
			// 2.0/2.1 at LOGOUT: "Aborted login (3 authentication attempts)".
			if n, ok := leadingCount(group, " authentication attempts"); ok {
				return KindAuthFailed, min(n, 1000)
			}
			return KindNone, 0
		}
	}
	kind := r.kind
	switch {
	case r.counted:
		return kind, attemptsAfter(group, r.human)
	case kind == KindNoAuth:
		// What closed the connection, written before the reason.
		switch {
		case bytes.Contains(pre, []byte("Connection queue full")):
			return KindProcessFull, 0
		case bytes.Contains(pre, []byte("Too many invalid commands")), bytes.Contains(pre, []byte("Too many bad commands")):
			return KindProbe, 0
		}
	}
	return kind, 0
}

// lastGroup splits "pre (group)" at the last group. pre has no trailing
// space.
func lastGroup(b []byte) (pre, group []byte, ok bool) {
	n := len(b)
	if n < 3 || b[n-1] != ')' {
		return nil, nil, false
	}
	i := bytes.LastIndexByte(b[:n-1], '(')
	if i < 0 {
		return nil, nil, false
	}
	return bytes.TrimSuffix(b[:i], []byte(" ")), b[i+1 : n-1], true
}

func isEventName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c == '_' || isDigit(c)) {
			return false
		}
	}
	return true
}

func matchHuman(group []byte) *loginReason {
	for i := range loginReasons {
		r := &loginReasons[i]
		if r.human != "" && bytes.HasPrefix(group, []byte(r.human)) {
			return r
		}
	}
	return nil
}

// attemptsAfter reads "N" from "<reason>, N attempts ..." (the reason's
// ", " is part of human); 1 when it is missing or zero, or when 2.4's event
// reason came with another human reason.
func attemptsAfter(group []byte, human string) int {
	rest, ok := bytes.CutPrefix(group, []byte(human))
	if !ok {
		return 1
	}
	n := 0
	for _, c := range rest {
		if !isDigit(c) {
			break
		}
		n = n*10 + int(c-'0')
		if n > 1000 {
			return 1000
		}
	}
	return max(n, 1)
}

func leadingCount(group []byte, suffix string) (int, bool) {
	rest, ok := bytes.CutSuffix(group, []byte(suffix))
	if !ok || len(rest) == 0 {
		return 0, false
	}
	n, ok := atoiN(rest)
	return n, ok && n > 0 && len(rest) <= 4
}
