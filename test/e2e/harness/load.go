package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

// child starts the harness's Self executable in the client namespace in a
// mailload role.
func (w *World) child(role string, job mailload.Job) (*exec.Cmd, error) {
	if w.opts.Self == "" {
		return nil, fmt.Errorf("harness: Options.Self is not set")
	}
	cfg, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	cmd := inNS(w.Client, w.opts.Self)
	cmd.Env = append(os.Environ(), mailload.RoleEnv+"="+role, mailload.ConfigEnv+"="+string(cfg))
	return cmd, nil
}

// Attack is a running attack child.
type Attack struct {
	p   *Proc
	out *os.File
	w   *World
}

// StartAttack starts a slot-holding attack from sources; it ends on Stop
// or after limit, whichever comes first.
func (w *World) StartAttack(name string, cfg mailload.AttackConfig, limit time.Duration) (*Attack, error) {
	return w.startAttacker(name, "attack", mailload.Job{Attack: &cfg, Duration: limit})
}

func (w *World) startAttacker(name, role string, job mailload.Job) (*Attack, error) {
	cmd, err := w.child(role, job)
	if err != nil {
		return nil, err
	}
	out, err := os.CreateTemp(w.Dir, name+"-*.json")
	if err != nil {
		return nil, err
	}
	cmd.Stdout = out
	p, err := w.start(name, cmd)
	if err != nil {
		out.Close()
		return nil, err
	}
	return &Attack{p: p, out: out, w: w}, nil
}

// Stop ends the attack, which closes its connections, and returns its
// counters.
func (a *Attack) Stop() (mailload.AttackStats, error) {
	var st mailload.AttackStats
	err := a.w.Stop(a.p, 15*time.Second)
	defer a.out.Close()
	if err != nil {
		return st, fmt.Errorf("attack %s: %w", a.p.Name, err)
	}
	b, err := os.ReadFile(a.out.Name())
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("attack %s output %q: %w", a.p.Name, b, err)
	}
	return st, nil
}

// Probe is a running login probe.
type Probe struct {
	p    *Proc
	w    *World
	mu   sync.Mutex
	all  []mailload.Attempt
	read chan struct{}
}

// StartProbe starts the login probe over every user. Each attempt is
// recorded, and passed to live (if not nil) as it arrives.
func (w *World) StartProbe(interval, deadline, limit time.Duration, count int, live func(mailload.Attempt)) (*Probe, error) {
	return w.StartLogins("probe", mailload.ProbeConfig{Users: w.Users, Interval: interval, Deadline: deadline, Count: count}, limit, live)
}

// StartLogins starts a probe child logging cfg.Users in (the server, its
// certificate's name and CA are filled in); name names its log.
func (w *World) StartLogins(name string, cfg mailload.ProbeConfig, limit time.Duration, live func(mailload.Attempt)) (*Probe, error) {
	cfg.Servers, cfg.ServerName = w.Servers(), ServerName
	return w.startReporter(name, "probe", mailload.Job{Duration: limit, Probe: &mailload.ProbeJob{ProbeConfig: cfg, CAFile: w.CAFile}}, live)
}

// StartHold starts a child keeping authenticated IDLE connections open for
// cfg.Users (the NAT office's clients); its logins and the connections it
// loses are recorded like a probe's attempts.
func (w *World) StartHold(name string, cfg mailload.HoldConfig, limit time.Duration) (*Probe, error) {
	cfg.Servers, cfg.ServerName = w.Servers(), ServerName
	return w.startReporter(name, "hold", mailload.Job{Duration: limit, Hold: &mailload.HoldJob{HoldConfig: cfg, CAFile: w.CAFile}}, nil)
}

// StartTrawl starts the distributed trawler from cfg.Sources; it ends on
// Stop or after limit.
func (w *World) StartTrawl(name string, cfg mailload.TrawlConfig, limit time.Duration) (*Attack, error) {
	cfg.Servers = w.Servers()
	return w.startAttacker(name, "trawl", mailload.Job{Trawl: &cfg, Duration: limit})
}

func (w *World) startReporter(name, role string, job mailload.Job, live func(mailload.Attempt)) (*Probe, error) {
	cmd, err := w.child(role, job)
	if err != nil {
		return nil, err
	}
	// A plain pipe rather than StdoutPipe: Wait would close StdoutPipe's
	// read end and could lose the last attempts.
	stdout, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	pr := &Probe{w: w, read: make(chan struct{})}
	p, err := w.start(name, cmd)
	pw.Close()
	if err != nil {
		stdout.Close()
		return nil, err
	}
	pr.p = p
	go func() {
		defer close(pr.read)
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var a mailload.Attempt
			if json.Unmarshal(sc.Bytes(), &a) != nil {
				continue
			}
			pr.mu.Lock()
			pr.all = append(pr.all, a)
			pr.mu.Unlock()
			if live != nil {
				live(a)
			}
		}
	}()
	return pr, nil
}

// Since returns the attempts that started at or after t.
func (pr *Probe) Since(t time.Time) []mailload.Attempt {
	return pr.Between(t, time.Now().Add(time.Hour))
}

// Between returns the attempts that started in [from, to).
func (pr *Probe) Between(from, to time.Time) []mailload.Attempt {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	var out []mailload.Attempt
	for _, a := range pr.all {
		if !a.Start.Before(from) && a.Start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// Stop ends the probe after its in-flight logins finish and returns every
// attempt.
func (pr *Probe) Stop() ([]mailload.Attempt, error) {
	err := pr.w.Stop(pr.p, 15*time.Second)
	<-pr.read
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if err != nil {
		return pr.all, fmt.Errorf("probe: %w", err)
	}
	return pr.all, nil
}

// Wait waits for a probe with a count to finish.
func (pr *Probe) Wait() []mailload.Attempt {
	<-pr.p.Done()
	<-pr.read
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.all
}
