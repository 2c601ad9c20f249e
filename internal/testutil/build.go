package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildXdpguard builds cmd/xdpguard into dir as make builds it (static,
// CGO_ENABLED=0), for tests that run the command, and returns its path.
func BuildXdpguard(dir string) (string, error) {
	bin := filepath.Join(dir, "xdpguard")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build xdpguard: %w\n%s", err, out)
	}
	return bin, nil
}

// XdpguardBinary is $XDPGUARD_BIN (make builds it for the end-to-end and
// CrowdSec tests), or BuildXdpguard(dir).
func XdpguardBinary(dir string) (string, error) {
	if bin := os.Getenv("XDPGUARD_BIN"); bin != "" {
		return bin, nil
	}
	return BuildXdpguard(dir)
}
