package main

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
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
			return note, doIn(h.env.dut, func() (err error) {
				l, err = link.AttachXDP(link.XDPOptions{Program: objs.Prog, Interface: h.env.dutIdx, Flags: xdpFlags(mode)})
				return err
			})
		},
		teardown: func(*harness) error {
			var err error
			if l != nil {
				err = l.Close()
				l = nil
			}
			if objs.Prog != nil {
				objs.Prog.Close()
				objs.Map.Close()
				objs.Prog, objs.Map = nil, nil
			}
			return err
		},
	}
}
