#!/usr/bin/env bash
# Compares `xdpguard logtest` with fail2ban-regex (Debian's dovecot filter in
# aggressive mode) on the same generated mail log; run by `make bench-logs`.
# Usage: bench-logs.sh XDPGUARD_BINARY LOGFILE
set -euo pipefail
bin=$1 log=$2
lines=$(wc -l <"$log")
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }

t0=$(now)
f2b=$(fail2ban-regex "$log" 'dovecot[mode=aggressive]' 2>&1 | grep -E '^Lines: ')
t1=$(now)
xdp=$("$bin" logtest "$log")
t2=$(now)

f2b_matched=$(sed -E 's/.* ([0-9]+) matched.*/\1/' <<<"$f2b")
f2b_secs=$(calc "$t1 - $t0")
xdp_secs=$(calc "$t2 - $t1")
# Attack lines: every matched line but successful logins.
xdp_attack=$(awk '/^RULE/{t=1;next} t&&/^\(none\)/{t=0} t&&$2!="login"{s+=$3} END{print s+0}' <<<"$xdp")
xdp_inner=$(sed -nE 's/.*s: ([0-9]+) lines\/s.*/\1/p' <<<"$xdp")
bans=$(sed -nE 's/^Would ban ([0-9]+) sources \(([0-9]+) more.*/\1/p' <<<"$xdp")
below=$(sed -nE 's/^Would ban ([0-9]+) sources \(([0-9]+) more.*/\2/p' <<<"$xdp")

printf '\n%s: %d lines, %s bytes\n\n' "$log" "$lines" "$(stat -c %s "$log")"
printf '%-34s %18s %18s\n' "" "fail2ban-regex" "xdpguard logtest"
printf '%-34s %18.2f %18.2f\n' "wall-clock seconds" "$f2b_secs" "$xdp_secs"
printf '%-34s %18.0f %18.0f\n' "lines/s (wall clock)" "$(calc "$lines / $f2b_secs")" "$(calc "$lines / $xdp_secs")"
printf '%-34s %18s %18s\n' "lines/s (parse + decide, inside)" "-" "$xdp_inner"
printf '%-34s %18s %18s\n' "attack lines caught" "$f2b_matched" "$xdp_attack"
printf '%-34s %18s %18s\n' "sources banned" "(no decisions)" "$bans"
printf '%-34s %18s %18s\n' "sources with a score, not banned" "-" "$below"
printf 'speed-up (wall clock): %.1fx\n\n' "$(calc "$f2b_secs / $xdp_secs")"
