package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// complete runs the generated bash completion the way bash does on <TAB>
// and returns its candidates.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\n" +
		"COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n_xdpguard\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.Command("bash", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("completion %q: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	out, stderr, code := xdpguard(t, nil, "gendocs", "bash")
	if code != 0 {
		t.Fatalf("gendocs bash: exit %d: %s", code, stderr)
	}
	script := filepath.Join(t.TempDir(), "xdpguard.bash")
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []string{"xdpguard.yaml", "other.txt"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	for _, tc := range []struct {
		words []string
		want  []string
		not   []string
	}{
		{[]string{"xdpguard", "ba"}, []string{"ban"}, []string{"gendocs"}},
		{[]string{"xdpguard", ""}, []string{"run", "status", "unban"}, []string{"gendocs"}},
		// Flags of the command on the line, after its positional argument too.
		{[]string{"xdpguard", "ban", "198.18.0.1", "--f"}, []string{"--for", "--from"}, []string{"--iface"}},
		{[]string{"xdpguard", "run", "--"}, []string{"--iface", "--config", "--detach-on-exit"}, []string{"--for"}},
		{[]string{"xdpguard", "run", "--iface", "l"}, []string{"lo"}, nil},
		{[]string{"xdpguard", "run", "--config", dir + "/xdp"}, []string{dir + "/xdpguard.yaml"}, []string{dir + "/other.txt"}},
	} {
		got := complete(t, script, tc.words...)
		for _, w := range tc.want {
			if !contains(got, w) {
				t.Errorf("%q: %q missing from %q", tc.words, w, got)
			}
		}
		for _, w := range tc.not {
			if contains(got, w) {
				t.Errorf("%q: %q offered: %q", tc.words, w, got)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func TestZshCompletion(t *testing.T) {
	out, stderr, code := xdpguard(t, nil, "gendocs", "zsh")
	if code != 0 {
		t.Fatalf("gendocs zsh: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"#compdef xdpguard", "'*--iface[", ":interface:_net_interfaces", "'--for[", "'ban:"} {
		if !strings.Contains(out, want) {
			t.Errorf("zsh completion lacks %q", want)
		}
	}
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Log("no zsh: syntax not checked")
		return
	}
	f := filepath.Join(t.TempDir(), "_xdpguard")
	os.WriteFile(f, []byte(out), 0o644)
	if b, err := exec.Command("zsh", "-n", f).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, b)
	}
}

func TestManPage(t *testing.T) {
	out, stderr, code := xdpguard(t, nil, "gendocs", "man")
	if code != 0 {
		t.Fatalf("gendocs man: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, ".TH xdpguard 8") {
		t.Errorf("not a section 8 page:\n%.200s", out)
	}
	// Every command and a flag of each appear, and the hidden one does not.
	for _, want := range []string{"run", "--iface", "ban", "--for", "status", "--json", "detach", "logtest"} {
		if !strings.Contains(out, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if strings.Contains(out, "gendocs") {
		t.Error("man page documents the hidden gendocs command")
	}
	if _, _, code := xdpguard(t, nil, "gendocs", "pdf"); code != 2 {
		t.Errorf("gendocs pdf: exit %d, want 2", code)
	}
}
