// Command genmaillog writes the benchmark mail log (see package maillog).
//
//	go run ./logwatch/internal/maillog/genmaillog -o build/maillog.log
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/xdpguard/xdpguard/internal/logwatch/internal/maillog"
)

func main() {
	s := maillog.DefaultSpec()
	out := flag.String("o", "", "output file (default stdout)")
	flag.IntVar(&s.Lines, "lines", s.Lines, "lines to write")
	flag.IntVar(&s.Attackers, "attackers", s.Attackers, "distinct attacking addresses")
	flag.Float64Var(&s.AttackPct, "attack-share", s.AttackPct, "share of attack lines")
	flag.Uint64Var(&s.Seed, "seed", s.Seed, "random seed")
	flag.Parse()
	w := os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	t, err := maillog.Generate(w, s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "genmaillog: %d lines, %d bytes, %d attacking and %d legitimate sources\n", t.Lines, t.Bytes, len(t.Attackers), len(t.Legit))
}
