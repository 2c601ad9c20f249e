package main

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
)

// xdp-filter (xdp-tools) pins its maps under this fixed directory, whatever
// LIBXDP_BPFFS says; that variable only moves libxdp's dispatcher pins.
const (
	xdpFilterPins = "/sys/fs/bpf/xdp-filter"
	xdpFilterObjs = "/usr/lib/x86_64-linux-gnu/bpf"
	xdpFilterObj  = "xdpfilt_alw_ip.o"
	// xdp-filter's compiled-in map size.
	xdpFilterMapSize = 10000
)

// xdpFilterMech is xdp-filter in allow policy (pass what is not listed) with
// the banned sources listed in src mode: its deny policy is default-deny.
// Its maps hold 10,000 entries; for bigger sets it loads a copy of its own
// object with the map size rewritten in the BTF map definitions, through
// libxdp's LIBXDP_OBJECT_PATH. The program is unchanged.
func xdpFilterMech(mode string) mech {
	created := false
	return mech{
		Name: "xdp-filter", Mode: mode, Filter: true,
		setup: func(h *harness, srcs []uint32) (string, error) {
			if _, err := os.Stat(xdpFilterPins); err == nil {
				return "", fmt.Errorf("%s exists: another xdp-filter is loaded on this host; not touching it", xdpFilterPins)
			}
			env := []string{"LIBXDP_BPFFS=" + filepath.Join(h.env.pinRoot, "libxdp")}
			note := ""
			if len(srcs) > xdpFilterMapSize {
				dir := filepath.Join(h.env.tmp, "xdpfilter")
				if err := resizedXDPFilter(dir, uint32(len(srcs))); err != nil {
					return "", err
				}
				env = append(env, "LIBXDP_OBJECT_PATH="+dir)
				note = fmt.Sprintf("map resized from %s to %s entries (patched copy of %s)", count(xdpFilterMapSize), count(len(srcs)), xdpFilterObj)
			}
			if err := os.MkdirAll(filepath.Join(h.env.pinRoot, "libxdp"), 0o700); err != nil {
				return "", err
			}
			xmode := "native"
			if mode == "generic" {
				xmode = "skb"
			}
			created = true
			if _, err := inEnv(h.env.dut, env, "xdp-filter", "load", "-p", "allow", "-f", "ipv4", "-m", xmode, dutIf); err != nil {
				return "", err
			}
			t0 := time.Now()
			// One address through xdp-filter itself, to learn the value it
			// stores; it takes one address per process, so the rest are
			// written to its pinned map with that same value.
			if _, err := inEnv(h.env.dut, env, "xdp-filter", "ip", "-m", "src", addrOf(srcs[0]).String()); err != nil {
				return "", err
			}
			if err := fillXDPFilter(srcs); err != nil {
				return "", err
			}
			if note != "" {
				note += "; "
			}
			return note + fmt.Sprintf("%s addresses written in %.2f s", count(len(srcs)), time.Since(t0).Seconds()), nil
		},
		teardown: func(h *harness) error {
			env := []string{"LIBXDP_BPFFS=" + filepath.Join(h.env.pinRoot, "libxdp")}
			_, err := inEnv(h.env.dut, env, "xdp-filter", "unload", dutIf)
			if created {
				// unload leaves the pins when it fails half-way.
				os.RemoveAll(xdpFilterPins)
			}
			return err
		},
	}
}

func inEnv(ns string, env []string, name string, args ...string) (string, error) {
	a := append(append([]string{}, env...), "nsenter", "--net="+nsPath(ns), name)
	return run("env", append(a, args...)...)
}

func fillXDPFilter(srcs []uint32) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(xdpFilterPins, "filter_ipv4"), nil)
	if err != nil {
		return fmt.Errorf("open xdp-filter's address map: %w", err)
	}
	defer m.Close()
	key := func(a uint32) uint32 { return beU32(a) }
	var val []uint64
	if err := m.Lookup(key(srcs[0]), &val); err != nil {
		return fmt.Errorf("read back %s from xdp-filter's map: %w", addrOf(srcs[0]), err)
	}
	for _, s := range srcs[1:] {
		if err := m.Update(key(s), val, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add %s to xdp-filter's map: %w", addrOf(s), err)
		}
	}
	return nil
}

// resizedXDPFilter writes into dir a copy of xdp-filter's object whose maps
// hold n entries, next to the libxdp dispatcher that must be found in the
// same path.
func resizedXDPFilter(dir string, n uint32) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"xdp-dispatcher.o", xdpFilterObj} {
		b, err := os.ReadFile(filepath.Join(xdpFilterObjs, f))
		if err != nil {
			return fmt.Errorf("xdp-tools object: %w", err)
		}
		if f == xdpFilterObj {
			if b, err = patchBTFArrays(b, xdpFilterMapSize, n); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// patchBTFArrays rewrites the element count of every BTF array of from
// elements to to. BTF-defined maps encode max_entries as such an array
// (`int (*max_entries)[N]`), and in xdp-filter's object nothing else has
// 10,000 elements.
func patchBTFArrays(obj []byte, from, to uint32) ([]byte, error) {
	f, err := elf.NewFile(readerAt(obj))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".BTF")
	if sec == nil {
		return nil, errors.New("no .BTF section")
	}
	out := append([]byte(nil), obj...)
	btf := out[sec.Offset : sec.Offset+sec.Size]
	le := binary.LittleEndian
	if le.Uint16(btf) != 0xeb9f {
		return nil, errors.New(".BTF: bad magic or not little-endian")
	}
	hdrLen, typeOff, typeLen := le.Uint32(btf[4:]), le.Uint32(btf[8:]), le.Uint32(btf[12:])
	types := btf[hdrLen+typeOff : hdrLen+typeOff+typeLen]
	patched := 0
	for off := 0; off+12 <= len(types); {
		info := le.Uint32(types[off+4:])
		kind, vlen := (info>>24)&0x1f, int(info&0xffff)
		extra := 0
		switch kind {
		case 1, 14, 17: // INT, VAR, DECL_TAG
			extra = 4
		case 3: // ARRAY: type, index_type, nelems
			if le.Uint32(types[off+20:]) == from {
				le.PutUint32(types[off+20:], to)
				patched++
			}
			extra = 12
		case 4, 5, 15, 19: // STRUCT, UNION, DATASEC, ENUM64
			extra = 12 * vlen
		case 6, 13: // ENUM, FUNC_PROTO
			extra = 8 * vlen
		case 2, 7, 8, 9, 10, 11, 12, 16, 18:
		default:
			return nil, fmt.Errorf(".BTF: unknown kind %d", kind)
		}
		off += 12 + extra
	}
	if patched == 0 {
		return nil, fmt.Errorf(".BTF: no array of %d elements", from)
	}
	return out, nil
}

type readerAt []byte

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r)) {
		return 0, io.EOF
	}
	n := copy(p, r[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
