package logwatch

import (
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// Every kind that can decide a ban maps to a reason of its own choosing:
// before the table, plaintext and tls-failed reached the kernel as "other".
func TestEveryKindHasAReason(t *testing.T) {
	want := map[Kind]datapath.Reason{
		KindNoAuth: datapath.ReasonNoAuth, KindAuthFailed: datapath.ReasonAuthFailed, KindAuthBackend: datapath.ReasonAuthFailed,
		KindPlaintext: datapath.ReasonProbe, KindTLSFailed: datapath.ReasonProbe, KindProbe: datapath.ReasonProbe,
		KindConnLimit: datapath.ReasonConnLimit, KindProcessFull: datapath.ReasonNoAuth,
	}
	for k := Kind(1); k < numKinds; k++ {
		if k == KindLogin {
			if reasonOf[k] != 0 {
				t.Errorf("login has reason %v; it never decides a ban", reasonOf[k])
			}
			continue
		}
		w, ok := want[k]
		if !ok {
			t.Errorf("kind %s: no expected reason in this test; add one", k)
			continue
		}
		if reasonOf[k] != w {
			t.Errorf("kind %s: reason %v, want %v", k, reasonOf[k], w)
		}
		if reasonOf[k] == datapath.ReasonOther || reasonOf[k] == 0 {
			t.Errorf("kind %s maps to %v", k, reasonOf[k])
		}
	}
}

// A plaintext-auth source is banned with the probe reason, and the decision
// carries its rule, counts and evidence window.
func TestPlaintextDecisionReason(t *testing.T) {
	e := newEngine(t, nil)
	var d *Decision
	for i := 0; i < 5 && d == nil; i++ {
		line := []byte("Nov 28 12:00:00 mx dovecot: pop3-login: Disconnected (tried to use disabled plaintext auth): rip=198.18.61.1, lip=198.18.0.1")
		if _, kind, _, ok := e.Classify(line, ""); !ok || kind != KindPlaintext {
			t.Fatalf("not classified as plaintext: %v %v", kind, ok)
		}
		d = e.Process(line, "", t0.Add(time.Duration(i)*time.Second)).Decision
	}
	if d == nil {
		t.Fatal("5 plaintext attempts (weight 2, threshold 10): no ban")
	}
	if d.Reason != datapath.ReasonProbe || d.Rule != RuleDovecotLogin || d.Events != 5 ||
		!d.First.Equal(t0) || !d.Time.Equal(t0.Add(4*time.Second)) || d.Offence != 1 {
		t.Fatalf("decision %+v", d)
	}
}
