package loader

import (
	"strings"
	"testing"
)

func TestCheckRelease(t *testing.T) {
	for release, ok := range map[string]bool{
		"6.1.0-56-amd64": true, "6.18.44-fc-v669": true, "5.11.0": true, "5.15.0-91-generic": true,
		"5.10.0-30-amd64": false, "4.19.0-27-amd64": false, "3.10.0-1160.el7.x86_64": false,
		"weird": true, // unknown format: the feature probes will speak
	} {
		err := checkRelease(release)
		if (err == nil) != ok {
			t.Errorf("%s: %v", release, err)
		}
		if err != nil && !strings.Contains(err.Error(), release) || err != nil && !strings.Contains(err.Error(), "5.11") {
			t.Errorf("%s: message %q should name the kernel and the minimum", release, err)
		}
	}
}
