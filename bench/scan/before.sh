#!/bin/sh
# Runs BenchmarkSlotCheck (internal/daemon/scan_bench_test.go) on the code
# at an earlier commit ($1), so that `make bench-scan` measures the daemon
# before and after in one run. The old tree gets the benchmark and its
# crowd (internal/testutil/crowd.go; before 475833a the package was
# internal/nstest, and the one helper the benchmark needs takes a
# testing.TB there).
set -eu
before=$1; shift
dir=build/scan-before
rm -rf "$dir"
mkdir -p "$dir"
git archive "$before" | tar -x -C "$dir"
if [ -d "$dir/internal/nstest" ]; then
	sed 's/^package testutil$/package nstest/' internal/testutil/crowd.go >"$dir/internal/nstest/crowd.go"
	sed 's#internal/testutil"#internal/nstest"#; s/testutil\./nstest./g' internal/daemon/scan_bench_test.go >"$dir/internal/daemon/scan_bench_test.go"
	sed -i 's/^func evictDaemon(t \*testing.T) \*Daemon {/func evictDaemon(t testing.TB) *Daemon {/' "$dir/internal/daemon/evict_ns_test.go"
else
	cp internal/testutil/crowd.go "$dir/internal/testutil/crowd.go"
	cp internal/daemon/scan_bench_test.go "$dir/internal/daemon/scan_bench_test.go"
fi
cd "$dir" && exec "$@"
