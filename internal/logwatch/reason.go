package logwatch

import (
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// reasonOf is the kernel's reason code for a ban decided by each kind of
// event. The kernel's codes are coarser than the kinds; the ban's record
// keeps the rule and the event counts. KindLogin never decides a ban (it
// only cancels), so it has no reason; reason_test.go checks that every
// other kind has one.
var reasonOf = [numKinds]datapath.Reason{
	KindNoAuth:      datapath.ReasonNoAuth,
	KindAuthFailed:  datapath.ReasonAuthFailed,
	KindAuthBackend: datapath.ReasonAuthFailed, // a passdb's failed verdict
	KindPlaintext:   datapath.ReasonProbe,      // cleartext auth where it is refused: probing, no password checked
	KindTLSFailed:   datapath.ReasonProbe,      // the C enum's "TLS, SASL or command probing"
	KindProbe:       datapath.ReasonProbe,
	KindConnLimit:   datapath.ReasonConnLimit,
	// Dovecot dropped the oldest client of a full login process: a
	// connection that held a slot without authenticating.
	KindProcessFull: datapath.ReasonNoAuth,
}

// Policy is the escalation part of the configuration, for the offence
// history.
func (c Config) Policy() offence.Policy {
	return offence.Policy{BanDuration: c.BanDuration, Factor: c.EscalationFactor, MaxBanDuration: c.MaxBanDuration,
		Retention: c.HistoryRetention, MaxOffenders: c.MaxOffenders, Granularity: c.granularity()}
}
