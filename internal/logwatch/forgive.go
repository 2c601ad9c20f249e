package logwatch

import (
	"net/netip"
	"time"
)

// Forgive takes back a Decision the caller chose not to carry out (the
// daemon spares sources that have logged in): the ban it recorded at at
// leaves the offender history, and the source is scored again from
// nothing, as the decision already cleared its events. Without it the
// engine would treat the source as banned for the ban's duration and
// ignore its next events, failed passwords included, and would count the
// spared decision as an offence.
func (e *Engine) Forgive(p netip.Prefix, at time.Time) { e.hist.Forgive(p, at) }
