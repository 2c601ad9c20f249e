package main

import (
	"os"
	"strings"
	"testing"
)

// BENCHMARKS.md ends with measurements.md, which a run of the harness
// appends: an edit made to one alone is lost, or undone, by the next run.
func TestBenchmarksEndsWithMeasurements(t *testing.T) {
	b, err := os.ReadFile("../../BENCHMARKS.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(b)), strings.TrimSpace(mdOutro)) {
		t.Fatal("BENCHMARKS.md does not end with bench/drop/measurements.md: edit both alike")
	}
}
