package logwatch

import "bytes"

// Pressure is Dovecot's master process warning that a service hit its
// process or client limit and is dropping connections:
//
//	master: Warning: service(imap-login): process_limit (100) reached, client connections are being dropped
//
// (src/master/service-monitor.c, the same text from 2.2 to 2.4). For a
// login service it means the login slots have run out: evidence of slot
// pressure, but with no source address, so it is never scored. The engine
// returns it in Result.Pressure and counts it in Counters.Pressure; what to
// do with it (tighten slot_holders) is the daemon's decision.
type Pressure struct {
	Service string `json:"service"` // "imap-login"
	Limit   string `json:"limit"`   // "process_limit" or "client_limit"
	Value   int    `json:"value"`   // the configured limit
}

// Login reports whether the service is a login service (pop3-login,
// imap-login, ...), whose limit is the login slots. A mail process limit
// (service(imap)) is reached by logged-in users.
func (p Pressure) Login() bool {
	return len(p.Service) > 6 && p.Service[len(p.Service)-6:] == "-login"
}

// pressure recognises the master's limit warning, when the dovecot-login
// rule is on.
func (e *Engine) pressure(p *Header) (Pressure, bool) {
	if !e.c.builtin[0] || !(len(p.Tag) == 0 || isDovecotTag(p.Tag)) {
		return Pressure{}, false
	}
	return masterPressure(p.Msg)
}

var pressureTail = []byte(" reached, client connections are being dropped")

// masterPressure parses the warning from a Dovecot message ("master: ...").
func masterPressure(msg []byte) (Pressure, bool) {
	rest, ok := bytes.CutPrefix(msg, []byte("master: "))
	if !ok {
		return Pressure{}, false
	}
	rest, _ = bytes.CutPrefix(rest, []byte("Warning: "))
	rest, ok = bytes.CutPrefix(rest, []byte("service("))
	if !ok {
		return Pressure{}, false
	}
	i := bytes.IndexByte(rest, ')')
	if i <= 0 || !isBackendName(rest[:i]) || !bytes.HasPrefix(rest[i:], []byte("): ")) {
		return Pressure{}, false
	}
	svc := rest[:i]
	rest, ok = bytes.CutSuffix(rest[i+3:], pressureTail)
	if !ok {
		return Pressure{}, false
	}
	limit, num, ok := bytes.Cut(rest, []byte(" ("))
	if !ok || (string(limit) != "process_limit" && string(limit) != "client_limit") {
		return Pressure{}, false
	}
	num, ok = bytes.CutSuffix(num, []byte(")"))
	n, okN := atoiN(num)
	if !ok || !okN || len(num) == 0 || len(num) > 9 {
		return Pressure{}, false
	}
	return Pressure{Service: string(svc), Limit: string(limit), Value: n}, true
}
