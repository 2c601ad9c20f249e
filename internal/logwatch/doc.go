// Package logwatch follows the mail log, recognises attacks on Dovecot and
// Postfix, and decides bans. It is plain Go: no root, testable anywhere.
//
// # Pieces
//
//   - Follow tails files with inotify (github.com/nxadm/tail), across
//     rotation by rename and by copytruncate, files that do not exist yet and
//     files deleted and recreated. It delivers whole lines only, drops and
//     counts lines over MaxLineBytes, and starts at the end of each file
//     unless a Backlog (the last N minutes, by line timestamps) is asked for:
//     old attacks must not ban anyone at start-up.
//   - ParseHeader recognises BSD syslog ("Nov  8 16:56:06 host tag[pid]: ",
//     also journalctl -o short), RFC 3339 with fraction and zone (Debian 12's
//     rsyslog, journalctl -o short-iso's "+0000"), RFC 5424, Dovecot's own
//     log_path format (host-less, "service: Info: ", with BSD or ISO dates,
//     or none), TAI64N, journalctl -o json and macOS's "(libdovecot.0.dylib)"
//     prefix. A line in none of them is FormatNone, counted as unparsed.
//   - Built-in rules: dovecot-login (pop3/imap/submission/managesieve-login,
//     Dovecot 2.0 to 2.4: every reason client_get_extra_disconnect_reason()
//     writes is in one table, reasons.go, with its kind or why it is not
//     scored), dovecot-auth (passwd-file, pam, sql, ldap and custom-named
//     passdb verdicts, including auth-worker(...) connection prefixes and
//     2.4's auth(user,ip,sasl:mech)<pid><sid>: request [N]: prefix) and
//     postfix-sasl. Custom rules are RE2 expressions with a named group "ip"
//     (and optionally "user"), a kind, a weight, an optional "requires" path
//     and "files". COVERAGE.md lists every format string with its fixture.
//   - Dovecot's master warning "service(imap-login): process_limit (N)
//     reached" is slot pressure with no source: Result.Pressure and
//     Counters.Pressure, never scored (pressure.go).
//   - Engine scores events per source and returns ban Decisions; Replay is
//     `xdpguard logtest`.
//
// # Where the address comes from
//
// The user name is the only field of a Dovecot line a client controls, and
// it can contain "rip=6.6.6.6", ", rip=", ">" or a whole log line (Dovecot
// only replaces control characters). So:
//
//   - login lines are classified on the text before the first ": user=<",
//     which Dovecot writes, and the address is the last " rip=" of the line:
//     Dovecot writes the user name before rip, so whatever it forges lies to
//     the left of the real field;
//   - passdb lines ("passwd-file(USER,IP,<SID>): Password mismatch") must end
//     with a known message, and the address is taken by position from the
//     right end, so a user name with commas, parentheses or "): " is inert;
//   - Postfix's "warning: name[IP]: SASL ... authentication failed" is read
//     from the left with a hostname character set (Postfix logs "unknown" for
//     a name that is not a valid hostname);
//   - in the host-less log_path format, a first token that is not a host
//     name (2.4's "auth(user with spaces,...") cannot make the next token a
//     syslog tag.
//
// Every address is validated with net/netip; IPv4-mapped IPv6 is unmapped,
// zones are refused. TestUserCannotFrameAddress and FuzzUserCannotFrame
// prove that no user name changes the address or the kind of a line.
//
// # Scoring model
//
// Exact sliding window. Each event has a weight (per kind for built-in
// rules, per rule for custom ones); a source's score is the sum of the
// weights of its events in the last Window. When it reaches Threshold the
// engine returns a Decision and forgets the events. Events of weight 0 are
// counted (metrics, logtest) but not scored. A window holds fewer than
// Threshold events of weight >= 1, so each source costs O(Threshold) memory,
// and the table of sources is an LRU capped at MaxSources (evictions are
// counted). An exact window was chosen over a decaying score because "10 in
// 10 minutes" is what an operator reads in the configuration and in
// fail2ban; a decaying score bans a steady 1-per-minute client eventually.
//
// Sources are masked like the kernel's bans: /32 for IPv4 and /64 for IPv6
// by default (IPv4Mask, IPv6Mask; keep them equal to the kernel's). A /64 is
// what one IPv6 customer gets, so per-address counting would let a single
// host rotate addresses for free.
//
// # Defaults, and why
//
//	threshold 10, window 10m   the starting point; Dovecot's default
//	                           login_process timeouts make a slot-holding bot
//	                           reach it within minutes
//	no-auth 1, tls-failed 1, probe 1
//	                           10 idle/aborted connections in 10 minutes;
//	                           clients that probe then log in are cancelled
//	auth-failed 2 per attempt  5 failed passwords in 10 minutes (fail2ban's
//	plaintext 2                maxretry = 5); the login summary line carries
//	                           the attempt count
//	auth-backend 0             the passdb line reports the same attempts as
//	                           the login summary; counting both would double
//	                           a typo. Postfix SASL through Dovecot writes
//	                           no login summary: its attempts are counted
//	                           once, on Postfix's own warning line
//	process-full 1             as no-auth: Dovecot closed the oldest
//	                           unauthenticated connection to make room
//	conn-limit 0               mail_max_userip_connections is hit by
//	                           authenticated users (phones, NAT), not attackers
//	ban 1h, x2 per repeat offence, max 7d, history 30d
//	                           a first ban is cheap to sit out for a
//	                           misconfigured client; a bot coming back is
//	                           banned for 2h, 4h, ... a week
//
// # Successful logins
//
// A successful login withdraws the source's no-auth, tls-failed, probe and
// conn-limit events: mail clients open idle connections (capability checks,
// parallel folder sync, IDLE connections dropped by NAT) and then log in,
// which is the false positive that made fail2ban drop no-auth detection from
// its default mode. Failed passwords (auth-failed, plaintext) are NOT
// withdrawn: an attacker who knows one password, or who guesses one, must
// not clear the record of its guesses; a legitimate user's two typos weigh 4
// and expire with the window.
//
// # Never banned
//
// Loopback, the host's own addresses (read at New and Reload) and the
// Allowlist never produce a decision; neither does a masked prefix that
// overlaps one of them (a /64 holding an allowlisted address).
//
// # Time
//
// Live lines are scored at their arrival time (Engine.Process); history
// (logtest, the start-up backlog) at the line's own timestamp
// (Engine.ProcessHistory). BSD syslog lines have no year or zone: local time
// and the year that puts the line at most a day ahead of the reference are
// assumed.
//
// # Concurrency
//
// An Engine is used from one goroutine (the daemon's log loop): Process,
// ProcessHistory, RecordBan, Reload, Snapshot, Restore, Expire and Sources
// do no locking. Counters, and Follower.Stats, are safe from any goroutine.
package logwatch
