package main

import _ "embed"

// mdOutro ends BENCHMARKS.md: measurements that are not this harness's
// (make bench-bpf, and before/after runs of it), kept by hand in
// measurements.md so that a new run does not erase them.
//
//go:embed measurements.md
var mdOutro string

// mdIntro is the fixed part of BENCHMARKS.md; the results follow it.
const mdIntro = `# Drop benchmark: xdpguard, nftables, ipset and xdp-filter

What does it cost a mail host to drop a flood from sources it has banned?
` + "`make bench-drop`" + ` measures it for xdpguard and for the mechanisms
an administrator would otherwise reach for, in one run, on the same veth.
It needs root; ` + "`make bench-drop QUICK=1`" + ` is a one-minute
development run (10,000 bans, one run per cell). The harness is
` + "`bench/drop/`" + `.

## Method

- Two network namespaces, a generator and a device under test (DUT), joined
  by a veth pair (198.18.0.1 and 198.18.0.2). Nothing outside them is
  touched; they, the BPF pins and the firewall state in them are removed at
  the end, also on failure and on SIGINT.
- The generator is an XDP program run with ` + "`BPF_PROG_RUN`" + ` and
  ` + "`BPF_F_TEST_XDP_LIVE_FRAMES`" + ` on the generator's veth. Each frame
  is a TCP SYN to port 110 whose source address is drawn at random from the
  banned set (10,000, 100,000 or 1,000,000 addresses from 10.0.0.0/8; more
  than the harness's own /15 holds), with a random source port and valid
  checksums. ` + "`XDP_TX`" + ` puts the frame into the DUT's receive ring.
  One generator thread, pinned to CPU 0, offers 4–6 Mpps. Each flood is
  bounded in time and in packets.
- The DUT's veth has GRO on (so NAPI runs without an XDP program) and
  threaded NAPI, its kthread pinned to CPU 1 at SCHED_FIFO. The per-packet
  cost is that thread's CPU time (` + "`/proc/PID/schedstat`" + `) over the
  frames it took off its ring (` + "`rx_queue_0_xdp_packets`" + `): frames
  lost to a full ring cost the DUT nothing and are not counted. Everything
  up to the drop, for every mechanism, runs in that thread.
- With no filter, the DUT's TCP stack answers each SYN; its SYN-ACKs go
  back to the generator's veth, where a small XDP program drops them, so
  they cost the DUT a real transmit and the generator next to nothing.
- During each flood a legitimate client at 198.18.0.1 (never banned) opens a
  TCP connection to a listener on the DUT's port 110 every 20 ms, with a
  2-second timeout (one SYN retransmission fits). Client and server run at
  SCHED_FIFO, so their latency is the network path's, not the scheduler's.
- Mechanisms: no filter; an nftables set of the banned addresses in a
  ` + "`netdev`" + ` ingress chain, and in a ` + "`prerouting`" + ` chain at
  raw priority; iptables (the nft backend Debian ships) raw PREROUTING with
  an ` + "`ipset hash:ip`" + `; xdp-filter in allow policy with the
  addresses added in src mode (its deny policy drops everything unlisted);
  xdpguard, attached and banned through its own CLI
  (` + "`xdpguard attach`" + `, ` + "`xdpguard ban --from FILE`" + `); and an
  unconditional XDP_DROP, the floor. The XDP ones are measured in native
  and in generic (skb) mode.
- xdp-filter's maps hold 10,000 entries. For the bigger sets the harness
  loads a copy of xdp-filter's own object with the map size rewritten in
  its BTF map definition (libxdp's ` + "`LIBXDP_OBJECT_PATH`" + `); the
  program is unchanged. It adds the first address with
  ` + "`xdp-filter ip -m src`" + ` and writes the rest, with the value
  xdp-filter stored, into its pinned map (the tool takes one address per
  process). xdp-filter pins its maps under /sys/fs/bpf/xdp-filter whatever
  ` + "`LIBXDP_BPFFS`" + ` says, so the harness skips it when that
  directory already exists (someone else's xdp-filter) and removes it
  afterwards.
- xdpguard's SYN rate limiter stays on, raised so the client's 50
  connections a second never trip it; banned packets are dropped before the
  limiter is consulted.
- Every cell is measured three times, in rounds that go through all the
  mechanisms before the next round, each setting up from scratch: a burst
  of someone else's load then spoils one sample of several cells, which
  the median absorbs, rather than every sample of one.
- "Parse + XDP_DROP" is the floor of any filter by source: it parses
  Ethernet and IPv4 and reads the source address, as every filter must,
  then drops. Its distance from the floor is what touching the packet
  costs (the floor reads none of it); a lookup's distance from it is the
  table's.
- "Bare hash lookup + XDP_DROP" is a reference, not a product: an XDP
  program that parses Ethernet and IPv4, looks the source up in a BPF hash
  map sized to the set, and drops on a hit. It is the least any ban list
  kept in a BPF hash map can cost; the gap between it and the floor is the
  map, and the gap between xdpguard and it is everything else xdpguard does.
- "Bucket-array lookup + XDP_DROP" is a second reference, for the layout
  xdpguard's IPv4 ban table uses: an ARRAY map of 64-byte buckets, here
  holding 16 IPv4 keys each and sized to the set, at most half full, so a
  lookup reads one cache line. It has no expiry, deletion or IPv6.
  xdpguard's own table holds 14 keys a bucket, a filter of them and
  their earliest deadline (each ban's own deadline is in a second array,
  read only once that one has passed), and uses as many buckets as keep its
  bans at most 3/5 full, growing by powers of two: at 100,000 and
  1,000,000 bans the same 1 and 8 MiB as this reference.
- Both veths have TSO off. Otherwise veth passes a socket's packets to the
  peer's backlog queue rather than its NAPI ring, except while a native XDP
  program is attached (which turns the peer's TSO off): the legitimate
  client would share the flood's path in some rows and not in others.
  With TSO off, the client's SYNs always cross the DUT's receive ring and
  its filter; when the 256-frame ring overflows they are lost like the
  flood's frames, and the retransmission a second later shows in the p99.

The machine has two cores that other work shares, so absolute figures move
between runs by 10–30%; compare ratios within one run, and look at the load
average printed with the results.
`
