package main

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// lookupOpts shape the reference hash map, for finding out what a ban map
// costs (-lookup-max, -lookup-noprealloc).
type lookupOpts struct {
	maxEntries int // 0: the set's size
	noPrealloc bool
}

// lookupMech is xdp_lookup: one hash lookup and a drop, the floor of any
// ban list kept in a BPF hash map. The map is sized to the set, as an
// operator could size xdpguard's.
func lookupMech(mode string) mech {
	var (
		objs struct {
			Prog *ebpf.Program `ebpf:"xdp_lookup"`
			Map  *ebpf.Map     `ebpf:"lookup_v4"`
		}
		l link.Link
	)
	return mech{
		Name: "bare hash lookup + XDP_DROP", Mode: mode,
		setup: func(h *harness, srcs []uint32) (string, error) {
			spec, err := LoadGen()
			if err != nil {
				return "", err
			}
			ms := spec.Maps["lookup_v4"]
			ms.MaxEntries = uint32(len(srcs))
			if h.lookup.maxEntries > 0 {
				ms.MaxEntries = uint32(max(h.lookup.maxEntries, len(srcs)))
			}
			if h.lookup.noPrealloc {
				ms.Flags |= 1 // BPF_F_NO_PREALLOC
			}
			if err := spec.LoadAndAssign(&objs, nil); err != nil {
				return "", fmt.Errorf("load xdp_lookup: %w", err)
			}
			keys := make([]uint32, len(srcs))
			vals := make([]uint8, len(srcs))
			for i, s := range srcs {
				keys[i], vals[i] = beU32(s), 1
			}
			if _, err := objs.Map.BatchUpdate(keys, vals, nil); err != nil {
				return "", fmt.Errorf("fill lookup_v4: %w", err)
			}
			note := fmt.Sprintf("map of %s entries", count(int(ms.MaxEntries)))
			if h.lookup.noPrealloc {
				note += ", BPF_F_NO_PREALLOC"
			}
			l, err = h.attachDUT("xdp_lookup", objs.Prog, mode)
			return note, err
		},
		teardown: func(*harness) error {
			err := detachDUT(&l, objs.Prog, objs.Map)
			objs.Prog, objs.Map = nil, nil
			return err
		},
	}
}

// oaMech is xdp_oa, the bucketized open-addressing reference.
func oaMech(mode string) mech {
	var (
		objs struct {
			Prog  *ebpf.Program `ebpf:"xdp_oa"`
			Table *ebpf.Map     `ebpf:"oa_table"`
			Mask  *ebpf.Map     `ebpf:"oa_mask"`
		}
		l link.Link
	)
	return mech{
		Name: bucketName, Mode: mode,
		setup: func(h *harness, srcs []uint32) (string, error) {
			table, over := oaBuild(srcs)
			if over > 0 {
				return "", fmt.Errorf("%d of %d keys found no bucket within %d probes", over, len(srcs), oaProbes)
			}
			spec, err := LoadGen()
			if err != nil {
				return "", err
			}
			spec.Maps["oa_table"].MaxEntries = uint32(len(table))
			if err := spec.LoadAndAssign(&objs, nil); err != nil {
				return "", fmt.Errorf("load xdp_oa: %w", err)
			}
			keys := make([]uint32, len(table))
			for i := range keys {
				keys[i] = uint32(i)
			}
			if _, err := objs.Table.BatchUpdate(keys, table, nil); err != nil {
				return "", fmt.Errorf("fill oa_table: %w", err)
			}
			if err := objs.Mask.Put(uint32(0), uint32(len(table)-1)); err != nil {
				return "", err
			}
			note := fmt.Sprintf("%s buckets of 16 keys, %d KiB", count(len(table)), len(table)*64/1024)
			l, err = h.attachDUT("xdp_oa", objs.Prog, mode)
			return note, err
		},
		teardown: func(*harness) error {
			err := detachDUT(&l, objs.Prog, objs.Table, objs.Mask)
			objs.Prog, objs.Table, objs.Mask = nil, nil, nil
			return err
		},
	}
}

const (
	oaWays   = 16
	oaProbes = 4
)

// oaBuild lays srcs out as xdp_oa expects: a power-of-two number of
// buckets, at most half full, each key in the first bucket from its hash
// with room. It returns how many keys did not fit within oaProbes buckets.
func oaBuild(srcs []uint32) ([]GenOaBucket, int) {
	n := 1
	for n*oaWays < 2*len(srcs) {
		n <<= 1
	}
	table := make([]GenOaBucket, n)
	fill := make([]uint8, n)
	over := 0
	for _, s := range srcs {
		k := beU32(s)
		b := int(datapath.Fmix32(k))
		placed := false
		for p := 0; p < oaProbes && !placed; p++ {
			i := (b + p) & (n - 1)
			if fill[i] < oaWays {
				table[i].Key[fill[i]] = k
				fill[i]++
				placed = true
			}
		}
		if !placed {
			over++
		}
	}
	return table, over
}

// oaLookup is xdp_oa's lookup in Go, for tests.
func oaLookup(table []GenOaBucket, k uint32) bool {
	b := int(datapath.Fmix32(k))
	for p := 0; p < oaProbes; p++ {
		bk := table[(b+p)&(len(table)-1)]
		for _, v := range bk.Key {
			if v == k {
				return true
			}
			if v == 0 {
				return false
			}
		}
	}
	return false
}
