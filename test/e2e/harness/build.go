package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// XdpguardBinary is $XDPGUARD_BIN (make test-e2e builds it), or the
// command built into dir.
func XdpguardBinary(dir string) (string, error) {
	if bin := os.Getenv("XDPGUARD_BIN"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(dir, "xdpguard")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build xdpguard: %w\n%s", err, out)
	}
	return bin, nil
}
