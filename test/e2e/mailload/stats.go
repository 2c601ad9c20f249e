package mailload

import (
	"slices"
	"strings"
	"time"
)

// Summary is what a phase reports about the legitimate users.
type Summary struct {
	Attempts int           `json:"attempts"`
	OK       int           `json:"ok"`
	Rate     float64       `json:"success_rate"` // OK / Attempts
	P50      time.Duration `json:"p50_ns"`       // of successful logins
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	// Failed counts the failures by protocol and the step that failed
	// ("imap greeting", "pop3 connect"): where a user was stopped.
	Failed map[string]int `json:"failed,omitempty"`
}

// Summarize computes the success rate and the latency percentiles of the
// successful logins. Failures are excluded from the percentiles because
// their "latency" is the 5 s deadline or an error, not a login time; the
// rate already counts them.
func Summarize(as []Attempt) Summary {
	s := Summary{Attempts: len(as)}
	var lat []time.Duration
	for _, a := range as {
		if a.OK {
			s.OK++
			lat = append(lat, a.Latency)
			continue
		}
		if s.Failed == nil {
			s.Failed = map[string]int{}
		}
		step, _, _ := strings.Cut(a.Err, ":")
		s.Failed[a.Proto+" "+step]++
	}
	if s.Attempts > 0 {
		s.Rate = float64(s.OK) / float64(s.Attempts)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50 = percentile(lat, 50)
		s.P99 = percentile(lat, 99)
		s.Max = lat[len(lat)-1]
	}
	return s
}

// SummarizeByFamily is Summarize of the attempts from IPv4 sources and of
// those from IPv6 sources.
func SummarizeByFamily(as []Attempt) (v4, v6 Summary) {
	var a4, a6 []Attempt
	for _, a := range as {
		if a.Src.Is4() {
			a4 = append(a4, a)
		} else {
			a6 = append(a6, a)
		}
	}
	return Summarize(a4), Summarize(a6)
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (p*len(sorted) + 99) / 100
	if i < 1 {
		i = 1
	}
	return sorted[i-1]
}
