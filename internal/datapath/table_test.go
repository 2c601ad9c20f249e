package datapath

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/packet"
)

// newDenseGuard loads a 64-bucket IPv4 table (896 slots), so that a few
// hundred keys share buckets and probe sequences overlap.
func newDenseGuard(t testing.TB, s Settings) *Guard {
	t.Helper()
	return newSizedGuard(t, s, 64)
}

// tableOps drives the table through the public API (plus raw expired bans)
// from ops, and checks after every step that userspace's view and the XDP
// program's verdict both agree with a plain map of live bans.
func tableOps(t *testing.T, ops []byte) {
	g := newDenseGuard(t, DefaultSettings())
	var keys []netip.Addr
	for i := range 560 {
		keys = append(keys, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
	}
	live := map[netip.Addr]bool{}
	check := func(step int, keys []netip.Addr) {
		t.Helper()
		for _, a := range keys {
			_, ok, err := g.BanOf(a)
			if err != nil {
				t.Fatal(err)
			}
			want := uint32(xdpPass)
			if live[a] {
				want = xdpDrop
			}
			if ok != live[a] {
				t.Fatalf("step %d: BanOf(%s) = %v, model says %v", step, a, ok, live[a])
			}
			// An ACK, so the rate limiter stays out of it.
			spec := syn(a, 143)
			spec.Flags = packet.ACK
			if got := run(t, g, packet.Build(spec)); got != want {
				t.Fatalf("step %d: program says %s for %s, model says %s", step, verdictName(got), a, verdictName(want))
			}
		}
		bans, err := g.Bans()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ok := range live {
			if ok {
				n++
			}
		}
		if len(bans) != n {
			t.Fatalf("step %d: Bans lists %d, model has %d", step, len(bans), n)
		}
		checkBuckets(t, g)
	}
	for step := 0; step+1 < len(ops); step += 2 {
		a := keys[(int(ops[step]/4)<<8|int(ops[step+1]))%len(keys)]
		p := netip.PrefixFrom(a, 32)
		switch ops[step] % 4 {
		case 0:
			err := g.Ban(p, time.Hour, OriginLog, ReasonNoAuth)
			if errors.Is(err, ErrTableFull) {
				break // rolled back: the model stays as it was
			}
			if err != nil {
				t.Fatal(err)
			}
			live[a] = true
		case 1:
			err := g.Unban(p)
			if live[a] != (err == nil) {
				t.Fatalf("step %d: Unban(%s) = %v with the model saying banned=%v", step, a, err, live[a])
			}
			live[a] = false
		case 2:
			// An expired ban: a used slot that any writer may reclaim.
			// (Deadline 1, not now minus a minute: a test VM may have
			// booted seconds ago.)
			if !live[a] {
				setRawBan(t, g, a, 1)
			}
		case 3:
			if _, err := g.Sweep(); err != nil {
				t.Fatal(err)
			}
		}
		// Every key now and then, and at the end; the one touched always.
		if step%32 == 0 || step+3 >= len(ops) {
			check(step, keys)
		} else {
			check(step, []netip.Addr{a})
		}
	}
}

// checkBuckets fails unless every bucket's earliest deadline is at most
// each of its bans' own, and its tags hold each of its keys' bits: a later
// deadline would keep an expired ban in force in the program until the
// next sweep, and a missing bit would let a banned source through.
func checkBuckets(t testing.TB, g *Guard) {
	t.Helper()
	tb, err := g.table()
	if err != nil {
		t.Fatal(err)
	}
	for i := range tb.slots() {
		b, k := i/banWays, tb.key(i)
		if !used(k) {
			continue
		}
		if tb.exp(i) < tb.minExp(b) {
			t.Fatalf("bucket %d says no ban expires before tick %d; slot %d's does at %d", b, tb.minExp(b), i, tb.exp(i))
		}
		if tags := atomic.LoadUint32(tb.tagp(b)); tags&tb.tag(k) == 0 {
			t.Fatalf("bucket %d's tags %#x lack the bit of slot %d's key %#x", b, tags, i, k)
		}
	}
}

func TestTableAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ops := make([]byte, 2000)
	for i := range ops {
		ops[i] = byte(r.Uint32())
	}
	// Bans first, so that most keys are banned and buckets overflow into
	// their neighbours, then a mix.
	for i := 0; i < 1400; i += 2 {
		ops[i] = 0
	}
	tableOps(t, ops)
}

func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 1, 2, 3, 3, 0, 0, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		tableOps(t, ops)
	})
}

// The program's auto-bans and userspace's bans land in the same buckets at
// the same time on two CPUs; none may be lost.
func TestTableKernelAndUserspaceRace(t *testing.T) {
	s := rateSettings(1)
	g := newDenseGuard(t, s)
	for round := range 5 {
		var kern, user []netip.Addr
		for i := range 120 {
			kern = append(kern, netip.AddrFrom4([4]byte{198, 18, byte(round), byte(i)}))
			user = append(user, netip.AddrFrom4([4]byte{198, 19, byte(round), byte(i)}))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, a := range kern {
				// Two SYNs against a threshold of one: the second bans.
				if _, err := g.prog.Run(&ebpf.RunOptions{Data: packet.Build(syn(a, 143)), Repeat: 1}); err != nil {
					errs <- err
					return
				}
				if _, err := g.prog.Run(&ebpf.RunOptions{Data: packet.Build(syn(a, 143)), Repeat: 1}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for _, a := range user {
				if err := g.Ban(netip.PrefixFrom(a, 32), time.Hour, OriginManual, ReasonManual); err != nil {
					errs <- err
					return
				}
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, set := range []struct {
			addrs  []netip.Addr
			origin Origin
		}{{kern, OriginKernel}, {user, OriginManual}} {
			for _, a := range set.addrs {
				b, ok, err := g.BanOf(a)
				if err != nil || !ok || b.Origin != set.origin {
					t.Fatalf("round %d: %s: ban %+v, %v, %v; want a %s ban", round, a, b, ok, err, set.origin)
				}
			}
		}
		checkBuckets(t, g)
		if _, err := g.UnbanAll(); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Sweep(); err != nil {
			t.Fatal(err)
		}
	}
	// Everything unbanned and swept: lookups of absent keys stop at the
	// first slot again.
	tb, err := g.table()
	if err != nil {
		t.Fatal(err)
	}
	for i := range tb.slots() {
		if k := tb.key(i); k != keyFree {
			t.Fatalf("slot %d still %#x after unbanning and sweeping everything", i, k)
		}
	}
}

func TestTableFullNamesTheAddress(t *testing.T) {
	g := newDenseGuard(t, DefaultSettings())
	var err error
	for i := 0; i < 1200 && err == nil; i++ {
		err = g.Ban(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32), time.Hour, OriginManual, ReasonManual)
	}
	if !errors.Is(err, ErrTableFull) {
		t.Fatalf("1200 bans in 896 slots: %v, want ErrTableFull", err)
	}
	if want := "ban 198.18."; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Fatalf("error %q should name the address", err)
	}
}

func TestExpiryEncoding(t *testing.T) {
	if expOf(0) != expForever || deadlineOf(expForever) != 0 {
		t.Fatal("0 must mean forever both ways")
	}
	for _, d := range []uint64{3 << banTickShift, 3<<banTickShift + 1, 4<<banTickShift - 1, uint64(time.Hour) * 1000} {
		if got := deadlineOf(expOf(d)); got < d || got-d >= 1<<banTickShift {
			t.Errorf("deadline %d round-trips to %d: must round up by less than a tick", d, got)
		}
	}
	if e := expOf(1); e == 0 {
		t.Errorf("a deadline right after boot encodes as 0")
	}
}

// The default table takes its advertised million bans: 1,048,576 random
// addresses, at the load the table is sized for, all fit within
// BAN_PROBES buckets of their own.
func TestTableHoldsMaxBans(t *testing.T) {
	g := newGuardWith(t, DefaultSettings(), Options{MaxTracked: 1 << 12, MaxCIDR: 1 << 10})
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[netip.Addr]bool{}
	ps := make([]netip.Prefix, 0, DefaultMaxBans)
	for len(ps) < DefaultMaxBans {
		a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
		if !seen[a] {
			seen[a] = true
			ps = append(ps, netip.PrefixFrom(a, 32))
		}
	}
	if err := g.BanMany(ps, time.Hour, OriginManual, ReasonBlocklist); err != nil {
		t.Fatalf("%d bans in the default table: %v", len(ps), err)
	}
	tb, err := g.table()
	if err != nil {
		t.Fatal(err)
	}
	if n := tb.count(tickOf(monoNow())); n != len(ps) {
		t.Fatalf("table holds %d live bans, want %d", n, len(ps))
	}
	// Displacement: how many buckets past its own each key had to go.
	most := 0
	for i := range tb.slots() {
		k := tb.key(i)
		if !used(k) {
			continue
		}
		home := tb.hash(k) & tb.mask
		d := int((uint32(i/banWays) - home) & tb.mask)
		most = max(most, d)
	}
	t.Logf("a million bans: the farthest key sits %d bucket(s) past its own (limit %d)", most, banProbes-1)
}

// The table starts small and grows by moving to its other side while the
// program keeps banning on its own: every ban, the kernel's included, is in
// force afterwards, and the program reads the larger side.
func TestTableGrowsUnderKernelBans(t *testing.T) {
	s := rateSettings(1)
	g := newGuardWith(t, s, Options{MaxBans: 1 << 16, MaxTracked: 1 << 14, MaxCIDR: 1 << 10})
	before, err := g.table()
	if err != nil {
		t.Fatal(err)
	}
	if got := before.buckets(); got != initialBuckets {
		t.Fatalf("a new table uses %d buckets, want %d", got, initialBuckets)
	}

	var kern []netip.Addr
	for i := range 3000 {
		kern = append(kern, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
	}
	var user []netip.Prefix
	for i := range 40000 {
		user = append(user, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32))
	}
	done := make(chan error, 1)
	go func() {
		for _, a := range kern {
			for range 2 { // the second SYN is over a rate of one
				if _, err := g.prog.Run(&ebpf.RunOptions{Data: packet.Build(syn(a, 143)), Repeat: 1}); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	// Several batches, so that growth happens while the kernel bans.
	for i := 0; i < len(user); i += 5000 {
		if err := g.BanMany(user[i:i+5000], time.Hour, OriginManual, ReasonBlocklist); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	after, err := g.table()
	if err != nil {
		t.Fatal(err)
	}
	if got := after.buckets(); got <= initialBuckets {
		t.Fatalf("after 43,000 bans the table still uses %d buckets", got)
	}
	// A kernel ban is in the table, or the program counted it as left to
	// the daemon because this test's writer held its bucket (preempted
	// there on a busy host): none is lost without a count, and the daemon
	// applies the counted ones, as EnsureBan does here.
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var missing []netip.Addr
	for _, a := range kern {
		if b, ok, err := g.BanOf(a); err != nil || !ok || b.Origin != OriginKernel {
			missing = append(missing, a)
		}
	}
	if uint64(len(missing)) != st.BanDeferred {
		t.Fatalf("%d kernel bans lost across growth (%v), %d counted as left to the daemon", len(missing), missing, st.BanDeferred)
	}
	for _, a := range missing {
		if added, err := g.EnsureBan(netip.PrefixFrom(a, 32), time.Hour, OriginKernel, ReasonSynRate); err != nil || !added {
			t.Fatalf("EnsureBan(%s) = %v, %v", a, added, err)
		}
	}
	for _, p := range user {
		if _, ok, err := g.BanOf(p.Addr()); err != nil || !ok {
			t.Fatalf("ban on %s lost: %v %v", p, ok, err)
		}
	}
	for _, a := range []netip.Addr{kern[0], kern[len(kern)-1], user[0].Addr(), user[len(user)-1].Addr()} {
		spec := syn(a, 25)
		spec.Flags = packet.ACK
		if got := run(t, g, packet.Build(spec)); got != xdpDrop {
			t.Fatalf("program passes banned %s after growth", a)
		}
	}
	checkBuckets(t, g)
	if st.BanTableFull != 0 {
		t.Fatalf("stats %+v: no kernel ban may have found the table full", st)
	}
}

// A kernel ban whose bucket a userspace writer holds (a writer preempted
// mid-write) is left out of the table and counted, not spun on; EnsureBan,
// which the daemon calls for every kernel ban it hears of, puts it in, and
// leaves a ban already in force as it is.
func TestKernelBanDeferredWhileUserspaceHoldsBucket(t *testing.T) {
	g := newGuardWith(t, rateSettings(1), Options{MaxBans: 1 << 12, MaxTracked: 1 << 12, MaxCIDR: 1 << 10})
	tb, err := g.table()
	if err != nil {
		t.Fatal(err)
	}
	held := netip.MustParseAddr("198.18.9.1")
	free := netip.MustParseAddr("198.18.9.2")
	hb := int(tb.hash(key4(held.As4())) & tb.mask)
	if int(tb.hash(key4(free.As4()))&tb.mask) == hb {
		t.Fatal("the two sources share a bucket; pick another")
	}
	synTwice := func(a netip.Addr) {
		for range 2 { // the second SYN is over a rate of one
			run(t, g, packet.Build(syn(a, 143)))
		}
	}
	tb.lock(hb)
	synTwice(held)
	synTwice(free)
	tb.unlock(hb)

	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.AutoBans != 2 || st.BanDeferred != 1 || st.BanTableFull != 0 {
		t.Fatalf("auto-bans %d, deferred %d, table full %d; want 2, 1, 0", st.AutoBans, st.BanDeferred, st.BanTableFull)
	}
	if _, ok, _ := g.BanOf(held); ok {
		t.Fatal("the program wrote into a bucket userspace held")
	}
	fb, ok, err := g.BanOf(free)
	if err != nil || !ok {
		t.Fatalf("the other source's ban: %v %v", ok, err)
	}
	if added, err := g.EnsureBan(netip.PrefixFrom(held, 32), time.Hour, OriginKernel, ReasonSynRate); err != nil || !added {
		t.Fatalf("EnsureBan of the deferred ban = %v, %v", added, err)
	}
	if b, ok, err := g.BanOf(held); err != nil || !ok || b.Origin != OriginKernel {
		t.Fatalf("deferred ban after EnsureBan: %+v %v %v", b, ok, err)
	}
	spec := syn(held, 25)
	spec.Flags = packet.ACK
	if got := run(t, g, packet.Build(spec)); got != xdpDrop {
		t.Fatal("program passes the deferred source after EnsureBan")
	}
	if added, err := g.EnsureBan(netip.PrefixFrom(free, 32), 2*time.Hour, OriginKernel, ReasonSynRate); err != nil || added {
		t.Fatalf("EnsureBan of a ban in force = %v, %v; want false", added, err)
	}
	if b, _, _ := g.BanOf(free); !b.Expires.Equal(fb.Expires) {
		t.Fatalf("EnsureBan moved a ban in force from %v to %v", fb.Expires, b.Expires)
	}
}

// A ban list of consecutive addresses, the usual shape of a blocklist,
// stays in short probe sequences for every seed: in a table of its size
// (at most 3/5 full) no key sits more than a few buckets past its own.
// The hash is what keeps it so; a multiply-add-shift hash, tried for a
// cheaper lookup (BENCHMARKS.md), left one seed in a few hundred with a
// full probe sequence at a third of the table's capacity.
func TestHashSpreadsConsecutiveAddresses(t *testing.T) {
	const n = 40000 // 198.19.0.0 up: 156 /24s and a part, in network order
	keys := make([]uint32, n)
	for i := range keys {
		keys[i] = key4([4]byte{198, 19, byte(i >> 8), byte(i)})
	}
	buckets := bucketsFor(n)
	fill := make([]uint8, buckets)
	for s := range 1000 {
		tb := &table4{mask: buckets - 1, seed: uint32(s) * 0x9e3779b9}
		clear(fill)
		most := 0
		for _, k := range keys {
			home := tb.hash(k) & tb.mask
			d := 0
			for ; d < banProbes && fill[(home+uint32(d))&tb.mask] == uint8(banWays); d++ {
			}
			if d == banProbes {
				t.Fatalf("seed %#x: no room for %#x within %d buckets", tb.seed, k, banProbes)
			}
			fill[(home+uint32(d))&tb.mask]++
			most = max(most, d)
		}
		if most > 4 {
			t.Fatalf("seed %#x: a key sits %d buckets past its own", tb.seed, most)
		}
	}
}

// A ban that ends after the sweep that set its bucket's earliest deadline
// stops dropping at its own deadline, while a later ban in the same bucket
// keeps dropping: the program reads the ban's own deadline once the
// bucket's has passed. The kernel's auto-bans and userspace's alike.
func TestBanEndsBeforeItsBucketsNextSweep(t *testing.T) {
	s := rateSettings(1)
	s.BanDuration = 300 * time.Millisecond
	g := newDenseGuard(t, s)
	tb, err := g.table()
	if err != nil {
		t.Fatal(err)
	}
	// Three sources whose keys share a bucket.
	var same []netip.Addr
	home := tb.hash(key4([4]byte{198, 18, 0, 1})) & tb.mask
	for i := 1; len(same) < 3; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if tb.hash(key4(a.As4()))&tb.mask == home {
			same = append(same, a)
		}
	}
	long, short, kern := same[0], same[1], same[2]
	if err := g.Ban(netip.PrefixFrom(long, 32), time.Hour, OriginManual, ReasonManual); err != nil {
		t.Fatal(err)
	}
	if err := g.Ban(netip.PrefixFrom(short, 32), 300*time.Millisecond, OriginManual, ReasonManual); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second SYN is over a rate of one: banned for 300 ms
		run(t, g, packet.Build(syn(kern, 143)))
	}
	if _, err := g.Sweep(); err != nil {
		t.Fatal(err)
	}
	checkBuckets(t, g)
	ack := func(a netip.Addr) []byte {
		spec := syn(a, 25)
		spec.Flags = packet.ACK
		return packet.Build(spec)
	}
	for _, a := range same {
		if got := run(t, g, ack(a)); got != xdpDrop {
			t.Fatalf("%s passes while banned", a)
		}
	}
	// Past both short deadlines (rounded up to a tick) and the clock's tick.
	end := monoNow() + uint64(time.Second)
	for monoNow() < end {
		time.Sleep(100 * time.Millisecond)
	}
	for a, want := range map[netip.Addr]uint32{long: xdpDrop, short: xdpPass, kern: xdpPass} {
		if got := run(t, g, ack(a)); got != want {
			t.Errorf("%s: %s after the short bans ended, want %s", a, verdictName(got), verdictName(want))
		}
	}
	// The sweep retires them and raises the bucket's deadline to the long one's.
	if n, err := g.Sweep(); err != nil || n != 2 {
		t.Fatalf("Sweep() = %d, %v; want the 2 ended bans", n, err)
	}
	i, _ := tb.find(key4(long.As4()))
	if m := tb.minExp(i / banWays); m != tb.exp(i) {
		t.Fatalf("bucket's earliest deadline %d after the sweep, want the long ban's %d", m, tb.exp(i))
	}
}
