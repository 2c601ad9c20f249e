package datapath

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// Batch helpers for the kernel maps: a million bans move in a few
// syscalls per thousand instead of one each.

// key4 is an address as the program reads it from a packet.
func key4(a [4]byte) uint32 { return binary.NativeEndian.Uint32(a[:]) }

func addr4(key uint32) netip.Addr {
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], key)
	return netip.AddrFrom4(a)
}

// batchPut writes vals under keys, recording how to restore what was there.
func batchPut[K comparable](m *ebpf.Map, keys []K, val bpf.XdpguardBan, undo *[]func()) error {
	if len(keys) == 0 {
		return nil
	}
	var prev []K
	var prevVals []bpf.XdpguardBan
	var fresh []K
	existing := func(k K) (bpf.XdpguardBan, bool) {
		var v bpf.XdpguardBan
		return v, m.Lookup(&k, &v) == nil
	}
	if len(keys) > 1024 {
		// One batch dump beats a lookup syscall per key.
		all := map[K]bpf.XdpguardBan{}
		if err := dump(m, func(k K, v bpf.XdpguardBan) { all[k] = v }); err != nil {
			return err
		}
		existing = func(k K) (bpf.XdpguardBan, bool) { v, ok := all[k]; return v, ok }
	}
	for _, k := range keys {
		if old, ok := existing(k); ok {
			prev = append(prev, k)
			prevVals = append(prevVals, old)
		} else {
			fresh = append(fresh, k)
		}
	}
	vals := make([]bpf.XdpguardBan, len(keys))
	for i := range vals {
		vals[i] = val
	}
	*undo = append(*undo, func() {
		m.BatchDelete(fresh, nil)
		if len(prev) > 0 {
			m.BatchUpdate(prev, prevVals, nil)
		}
	})
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		for i := range keys {
			if err := m.Put(&keys[i], &vals[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// dump calls fn for every entry of a hash map, in batches of a few thousand
// entries per syscall where the kernel supports it.
func dump[K comparable, V any](m *ebpf.Map, fn func(K, V)) error {
	const chunk = 4096
	keys := make([]K, chunk)
	vals := make([]V, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return err
		}
	}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		fn(k, v)
	}
	return it.Err()
}

// deleteKeys deletes the keys that exist; a batch delete stops at the first
// missing key, so missing ones are filtered out first.
func deleteKeys[K comparable](m *ebpf.Map, keys []K) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	all := map[K]bool{}
	if err := dump(m, func(k K, _ bpf.XdpguardBan) { all[k] = true }); err != nil {
		return 0, err
	}
	var present []K
	for _, k := range keys {
		if all[k] {
			present = append(present, k)
			delete(all, k) // duplicates in keys
		}
	}
	if len(present) == 0 {
		return 0, nil
	}
	n, err := m.BatchDelete(present, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		n = 0
		for i := range present {
			if err := m.Delete(&present[i]); err == nil {
				n++
			}
		}
		return n, nil
	}
	return n, err
}
