package crowdsec

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// What 1.4.6 sent (shared/notes/crowdsec-1.4-offline.md): null lists,
// nanosecond durations, a negative duration on a deleted decision.
const stream14 = `{"deleted":null,"new":[{"duration":"59m58.759005961s","id":1,"origin":"cscli","scenario":"manual 'ban' from 'lab'","scope":"Ip","type":"ban","value":"198.18.77.7"},{"duration":"59m58.759003877s","id":2,"origin":"cscli","scenario":"manual 'ban' from 'lab'","scope":"Range","type":"ban","value":"198.18.78.0/24"},{"duration":"59m59.759003356s","id":3,"origin":"cscli","scenario":"manual 'ban' from 'lab'","scope":"Ip","type":"ban","value":"2001:db8:77::7"}]}`

const delete14 = `{"deleted":[{"duration":"-39.191864ms","id":1,"origin":"cscli","scenario":"manual 'ban' from 'lab'","scope":"Ip","type":"ban","value":"198.18.77.7"}],"new":null}`

// 1.6 and later: [] lists, durations rounded to seconds, scopes in other
// cases, /32 values.
const stream16 = `{"deleted":[],"new":[{"duration":"3599s","id":7,"origin":"CAPI","scenario":"crowdsecurity/ssh-bf","scope":"ip","type":"ban","value":"198.18.9.9/32"},{"duration":"1h0m0s","id":8,"origin":"lists","scenario":"firehol","scope":"RANGE","type":"ban","value":"2001:db8:9::/48"},{"duration":"1h","id":9,"origin":"crowdsec","scenario":"x","scope":"Ip","type":"captcha","value":"198.18.9.10"},{"duration":"1h","id":10,"origin":"crowdsec","scenario":"x","scope":"Country","type":"ban","value":"FR"}]}`

var defaultFilter = Filter{Scopes: []string{"ip", "range"}, Types: []string{"ban"}}

func TestDecode14(t *testing.T) {
	d, err := DecodeStream(strings.NewReader(stream14), defaultFilter, true)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Startup || len(d.Deleted) != 0 || len(d.New) != 3 || d.Bad != 0 {
		t.Fatalf("got %+v", d)
	}
	want := []string{"198.18.77.7/32", "198.18.78.0/24", "2001:db8:77::7/128"}
	for i, b := range d.New {
		if b.Prefix.String() != want[i] {
			t.Errorf("new[%d] = %s, want %s", i, b.Prefix, want[i])
		}
		if b.TTL < 59*time.Minute || b.TTL > time.Hour {
			t.Errorf("new[%d] ttl %s", i, b.TTL)
		}
		if b.Scenario != "manual 'ban' from 'lab'" || b.Origin != "cscli" || b.ID != int64(i+1) {
			t.Errorf("new[%d] = %+v", i, b)
		}
	}
	d, err = DecodeStream(strings.NewReader(delete14), defaultFilter, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.New) != 0 || len(d.Deleted) != 1 || d.Deleted[0].Prefix != netip.MustParsePrefix("198.18.77.7/32") || d.Deleted[0].ID != 1 {
		t.Fatalf("deleted: %+v", d)
	}
}

func TestDecode16(t *testing.T) {
	d, err := DecodeStream(strings.NewReader(stream16), defaultFilter, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.New) != 2 || d.Skipped != 2 || d.Bad != 0 {
		t.Fatalf("got %+v", d)
	}
	if d.New[0].Prefix.String() != "198.18.9.9/32" || d.New[0].TTL != 3599*time.Second {
		t.Errorf("new[0] = %+v", d.New[0])
	}
	if d.New[1].Prefix.String() != "2001:db8:9::/48" || d.New[1].TTL != time.Hour {
		t.Errorf("new[1] = %+v", d.New[1])
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, body := range []string{`{}`, `{"new":null,"deleted":null}`, `{"new":[],"deleted":[]}`} {
		d, err := DecodeStream(strings.NewReader(body), defaultFilter, false)
		if err != nil || len(d.New)+len(d.Deleted)+d.Bad+d.Skipped != 0 {
			t.Errorf("%s: %+v, %v", body, d, err)
		}
	}
	for _, body := range []string{``, `[`, `{"new":{}}`, `null x`} {
		if _, err := DecodeStream(strings.NewReader(body), defaultFilter, false); err == nil && body != `null x` {
			t.Errorf("%q: no error", body)
		}
	}
}

func TestParseValue(t *testing.T) {
	for _, c := range []struct{ scope, value, want string }{
		{"Ip", "198.18.0.1", "198.18.0.1/32"},
		{"ip", "198.18.0.1/32", "198.18.0.1/32"},
		{"IP", " 2001:db8::1 ", "2001:db8::1/128"},
		{"Ip", "2001:db8::1/128", "2001:db8::1/128"},
		{"Ip", "::ffff:198.18.0.1", "198.18.0.1/32"},
		{"Range", "198.18.3.7/24", "198.18.3.0/24"},
		{"range", "::ffff:198.18.3.0/120", "198.18.3.0/24"},
		{"rAnGe", "2001:db8::/32", "2001:db8::/32"},
		{"Range", "198.18.0.1", "198.18.0.1/32"},
		{"Ip", "198.18.0.0/24", ""},
		{"Ip", "nonsense", ""},
		{"Range", "0.0.0.0/0", ""},
		{"Range", "::/0", ""},
		{"Range", "::ffff:0.0.0.0/90", ""},
		{"Ip", "fe80::1%eth0", ""},
		{"Country", "FR", ""},
	} {
		p, err := parseValue(c.scope, c.value)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != c.want {
			t.Errorf("%s %q = %q (%v), want %q", c.scope, c.value, got, err, c.want)
		}
	}
}

func TestDecodeBadDecisions(t *testing.T) {
	body := `{"new":[{"id":1,"scope":"Ip","type":"ban","value":"198.18.0.300","duration":"1h"},
		{"id":2,"scope":"Ip","type":"ban","value":"198.18.0.3","duration":"forever"},
		{"id":3,"scope":"Ip","type":"ban","value":"198.18.0.4","duration":"-1s"},
		{"id":4,"scope":"Ip","type":"ban","value":"198.18.0.5","duration":"1h"}]}`
	d, err := DecodeStream(strings.NewReader(body), defaultFilter, false)
	if err != nil {
		t.Fatal(err)
	}
	if d.Bad != 3 || len(d.New) != 1 || d.New[0].ID != 4 || !strings.Contains(d.BadExample, "decision 1") {
		t.Fatalf("got %+v", d)
	}
}

func TestFilter(t *testing.T) {
	f := Filter{Scopes: []string{"ip"}, Types: []string{"ban"}, Origins: []string{"cscli", "crowdsec"},
		ScenariosContaining: []string{"ssh", "manual"}, ScenariosNotContaining: []string{"http"}}
	for _, c := range []struct {
		d    decision
		want bool
	}{
		{decision{Scope: "IP", Type: "Ban", Origin: "CSCLI", Scenario: "manual ban"}, true},
		{decision{Scope: "range", Type: "ban", Origin: "cscli", Scenario: "manual"}, false},
		{decision{Scope: "ip", Type: "captcha", Origin: "cscli", Scenario: "manual"}, false},
		{decision{Scope: "ip", Type: "ban", Origin: "CAPI", Scenario: "ssh-bf"}, false},
		{decision{Scope: "ip", Type: "ban", Origin: "crowdsec", Scenario: "crowdsecurity/ssh-bf"}, true},
		{decision{Scope: "ip", Type: "ban", Origin: "crowdsec", Scenario: "crowdsecurity/ssh-http"}, false},
		{decision{Scope: "ip", Type: "ban", Origin: "crowdsec", Scenario: "crowdsecurity/dovecot"}, false},
	} {
		if got := f.wants(&c.d); got != c.want {
			t.Errorf("%+v: %v, want %v", c.d, got, c.want)
		}
	}
	if !(Filter{}).wants(&decision{Scope: "whatever"}) {
		t.Error("an empty filter refuses")
	}
}

func FuzzDecodeStream(f *testing.F) {
	for _, s := range []string{stream14, delete14, stream16, `{}`, `{"new":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		d, err := DecodeStream(strings.NewReader(body), defaultFilter, false)
		if err != nil {
			return
		}
		for _, b := range append(d.New, d.Deleted...) {
			if !b.Prefix.IsValid() || b.Prefix != b.Prefix.Masked() || b.Prefix.Bits() == 0 || b.Prefix.Addr().Is4In6() {
				t.Fatalf("bad prefix %v from %q", b.Prefix, body)
			}
		}
		for _, b := range d.New {
			if b.TTL <= 0 {
				t.Fatalf("non-positive ttl %v from %q", b.TTL, body)
			}
		}
	})
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
