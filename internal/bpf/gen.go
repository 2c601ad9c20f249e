// Package bpf holds the XDP program and its bpf2go bindings. The generated
// *_bpfel.go and *_bpfel.o files are committed so that `go build` needs no
// clang; `make generate` rebuilds them.
package bpf

// The simplifycfg flags keep clang from merging the IPv4 and IPv6 map
// lookups into one call with the map in a register: the verifier inlines a
// lookup only when its call site always sees the same map, and an indirect
// one cost ~10 ns a packet (BenchmarkPerPacket). -mcpu=v3 for the
// compare-and-swap on the IPv4 ban table (BPF_CMPXCHG, Linux 5.12).
//
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -mllvm -simplifycfg-sink-common=false -mllvm -simplifycfg-hoist-common=false" -target bpfel -type ban -type ban_bucket -type ban_meta -type ban_table -type cidr_rule -type cidr_v4_key -type cidr_v6_key -type syn_state -type syn_slot_v4 -type syn_slot_v6 -type syn_pair_v4 -type syn_pair_v6 -type syn_fp -type config -type counters -type event -type in6_key -type origin -type reason -type stat -type cidr_action -type config_flags Xdpguard xdpguard.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type priority_key -type fresh_limit Priority priority.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel Sockets sockets.c
