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
func (e *Engine) Forgive(p netip.Prefix, at time.Time) {
	a := p.Masked().Addr().Unmap()
	o := e.offs[e.key(a)]
	if o == nil {
		return
	}
	ns := at.UnixNano()
	for i := len(o.bans) - 1; i >= 0; i-- {
		if o.bans[i] == ns {
			o.bans = append(o.bans[:i], o.bans[i+1:]...)
			break
		}
	}
	// A decision is only made for a source the engine did not hold
	// banned, so nothing else holds it now.
	o.until = 0
	if len(o.bans) == 0 {
		e.offOrder.Remove(o.elem)
		delete(e.offs, o.key)
		e.countSizes()
	}
}
