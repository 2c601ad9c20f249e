package mailload

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// RoleEnv names the role a re-executed binary plays; ConfigEnv carries its
// configuration as JSON. A test binary or the demo re-executes itself
// under `nsenter --net=` so the whole process lives in the client
// namespace; calling Main first thing in TestMain or main does the rest.
const (
	RoleEnv   = "XDPGUARD_E2E_ROLE"
	ConfigEnv = "XDPGUARD_E2E_CONFIG"
)

// Job is the JSON configuration of a child process.
type Job struct {
	Attack *AttackConfig `json:"attack,omitempty"`
	Trawl  *TrawlConfig  `json:"trawl,omitempty"`
	Probe  *ProbeJob     `json:"probe,omitempty"`
	Hold   *HoldJob      `json:"hold,omitempty"`
	// Duration bounds the child even if nobody signals it.
	Duration time.Duration `json:"duration"`
}

// ProbeJob is ProbeConfig with the CA as a file.
type ProbeJob struct {
	ProbeConfig
	CAFile string `json:"ca_file"`
}

// HoldJob is HoldConfig with the CA as a file.
type HoldJob struct {
	HoldConfig
	CAFile string `json:"ca_file"`
}

// Main runs the role named in the environment, if any, and exits; it
// returns at once when the process is not a child.
func Main() {
	role := os.Getenv(RoleEnv)
	if role == "" {
		return
	}
	if err := runChild(role); err != nil {
		fmt.Fprintf(os.Stderr, "mailload %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(role string) error {
	var job Job
	if err := json.Unmarshal([]byte(os.Getenv(ConfigEnv)), &job); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if job.Duration <= 0 {
		return fmt.Errorf("config: a positive duration is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, job.Duration)
	defer cancel()
	out := json.NewEncoder(os.Stdout)
	switch {
	case role == "attack" && job.Attack != nil:
		return out.Encode(Attack(ctx, *job.Attack))
	case role == "trawl" && job.Trawl != nil:
		return out.Encode(Trawl(ctx, *job.Trawl))
	case role == "probe" && job.Probe != nil:
		cfg := job.Probe.ProbeConfig
		if err := loadCA(&cfg, job.Probe.CAFile); err != nil {
			return err
		}
		return reportAll(out, func(report func(Attempt)) { Probe(ctx, cfg, report) })
	case role == "hold" && job.Hold != nil:
		cfg := job.Hold.HoldConfig
		if err := loadCA(&cfg.ProbeConfig, job.Hold.CAFile); err != nil {
			return err
		}
		return reportAll(out, func(report func(Attempt)) { Hold(ctx, cfg, report) })
	}
	return fmt.Errorf("unknown role or missing config section")
}

func loadCA(cfg *ProbeConfig, file string) error {
	if file == "" {
		return nil
	}
	pool, err := LoadCA(file)
	if err != nil {
		return err
	}
	cfg.RootCAs = pool
	return nil
}

// reportAll runs a role that reports attempts, writing each as one JSON
// line, and returns the first write error.
func reportAll(out *json.Encoder, run func(report func(Attempt))) error {
	var werr error
	run(func(a Attempt) {
		if err := out.Encode(a); err != nil && werr == nil {
			werr = err
		}
	})
	return werr
}
