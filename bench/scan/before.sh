#!/bin/sh
# Runs BenchmarkSlotCheck (internal/daemon/scan_bench_test.go) on the code
# before the socket scan was filtered in the kernel (commit $1), so that
# `make bench-scan` measures the daemon before and after in one run. The
# old tree gets the benchmark and its crowd (internal/testutil/crowd.go,
# whose package was internal/nstest then); the one helper it needs takes a
# testing.TB there.
set -eu
before=$1; shift
dir=build/scan-before
rm -rf "$dir"
mkdir -p "$dir"
git archive "$before" | tar -x -C "$dir"
sed 's/^package testutil$/package nstest/' internal/testutil/crowd.go >"$dir/internal/nstest/crowd.go"
sed 's#internal/testutil"#internal/nstest"#; s/testutil\./nstest./g' internal/daemon/scan_bench_test.go >"$dir/internal/daemon/scan_bench_test.go"
sed -i 's/^func evictDaemon(t \*testing.T) \*Daemon {/func evictDaemon(t testing.TB) *Daemon {/' "$dir/internal/daemon/evict_ns_test.go"
cd "$dir" && exec "$@"
