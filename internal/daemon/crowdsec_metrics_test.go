package daemon

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpguard/xdpguard/internal/crowdsec"
)

func TestCrowdsecMetrics(t *testing.T) {
	c := &crowdsecCollector{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	gather := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.Metric {
				name := mf.GetName()
				for _, l := range m.Label {
					name += "," + l.GetValue()
				}
				out[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
		return out
	}
	if got := gather(); len(got) != 0 {
		t.Fatalf("metrics without a link: %v", got)
	}
	c.l = &crowdsecLink{bouncer: &crowdsec.Bouncer{}, pusher: &crowdsec.Pusher{}, active: 5}
	got := gather()
	for k, v := range map[string]float64{"xdpguard_crowdsec_decisions": 5, "xdpguard_crowdsec_up,pull": 0,
		"xdpguard_crowdsec_up,push": 0, "xdpguard_crowdsec_alerts_total,posted": 0} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
