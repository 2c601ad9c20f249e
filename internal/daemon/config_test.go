package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/config"
)

// The example's commented detect section must be a working configuration
// once uncommented: operators copy it.
func TestExampleDetectSectionResolves(t *testing.T) {
	raw, err := os.ReadFile("../config/xdpguard.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "# detect:") {
			in = true
		}
		if in && !strings.HasPrefix(line, "#") {
			in = false
		}
		if in {
			line = strings.TrimPrefix(strings.TrimPrefix(line, "#"), " ")
		}
		out = append(out, line)
	}
	text := strings.Join(out, "\n")
	if !strings.Contains(text, "\ndetect:\n") {
		t.Fatal("no detect section found in the example")
	}
	c, err := config.Parse([]byte(strings.Replace(text, "interfaces: []", "interfaces: [eth1]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := Resolve(*c)
	if err != nil {
		t.Fatalf("the example's detect section does not resolve: %v", err)
	}
	if len(rc.Detect.Rules) != 1 || rc.Detect.Rules[0].Name != "my-daemon" || rc.Detect.Threshold != 10 {
		t.Errorf("detect decoded as %+v", rc.Detect)
	}
}

func TestResolveRefusesBadDetect(t *testing.T) {
	for yaml, want := range map[string]string{
		"detect:\n  treshold: 3\n":                                    "treshold",
		"detect:\n  files: [/var/log/x]\n":                            "set logs.files instead",
		"detect:\n  threshold: -1\n":                                  "threshold",
		"detect: [1, 2]\n":                                            "must be a mapping",
		"detect:\n  rules: [{name: x, regexp: '(', kind: no-auth}]\n": "x",
		"": "interfaces: none given",
	} {
		text := "interfaces: [eth1]\n" + yaml
		if yaml == "" {
			text = ""
		}
		c, err := config.Parse([]byte(text))
		if err == nil {
			_, err = Resolve(*c)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one naming %q", yaml, err, want)
		}
	}
}
