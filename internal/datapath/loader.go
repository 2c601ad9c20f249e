// Package datapath loads xdpguard's XDP program, attaches it to interfaces,
// pins its maps and links under a bpffs directory, and gives typed access to
// those maps. The daemon and every CLI command go through it: the daemon with
// New, which may load and attach, and the operator commands with Open, which
// only reopens what is pinned.
package datapath

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// DefaultPinRoot is where a real install pins its state.
const DefaultPinRoot = "/sys/fs/bpf/xdpguard"

// Map sizes, per family. The IPv6 ban map is a hash map, not preallocated,
// so an empty one costs only its bucket array. The IPv4 ban table has two
// sides, each preallocated for MaxBans at 3/5 load: 64-byte buckets of 14
// keys, 8 MiB apiece for the default million, and 88 bytes of deadlines,
// lock, origins and reasons per bucket. Only the part that fits the bans held is
// in use, so few bans stay in few cache lines. The SYN trackers are tables
// of MaxTracked slots (rounded up to a power of two), 64 bytes each for
// IPv4 and 128 for IPv6: 12 MiB for the default 65,536.
const (
	DefaultMaxBans    = 1 << 20
	DefaultMaxTracked = 1 << 16
	DefaultMaxCIDR    = 1 << 16
)

// Options says how to load. The zero value loads unpinned with default
// sizes, which is what tests want.
type Options struct {
	// PinRoot is the bpffs directory for maps and links. Empty: nothing is
	// pinned and everything goes away with the Guard.
	PinRoot string
	// Per-family map sizes; zero means the default.
	MaxBans    uint32
	MaxTracked uint32
	MaxCIDR    uint32
}

// Guard is a handle on xdpguard's maps and, when loaded with New, its program.
// Its methods are safe for concurrent use; the kernel serialises map access.
type Guard struct {
	pinRoot string
	maps    bpf.XdpguardMaps
	prog    *ebpf.Program // nil when opened with Open
	links   []link.Link   // unpinned attachments, closed with the Guard
	created bool          // the maps are new, not adopted from pins

	t4mu  sync.Mutex
	sides [2]*banSide // the IPv4 ban table's sides, mapped on first use

	wmu sync.Mutex // in-process half of lockWrites
}

// bucketsFor sizes the IPv4 ban table: a power of two of buckets that fits
// bans, and at least one page.
func bucketsFor(bans uint32) uint32 {
	n := uint32(4096 / 64)
	for !fits(n, uint64(bans)) {
		n <<= 1
	}
	return n
}

// trackerPairs sizes a SYN tracker for n slots: a power of two of slot
// pairs (one map value each), at least one, because the program masks its
// hash.
func trackerPairs(n uint32) uint32 {
	return max(2, uint32(1)<<bits.Len32(n-1)) / 2
}

// mapNames lists the maps that are pinned, in a stable order.
var mapNames = []string{
	bpf.XdpguardMapBansV4, bpf.XdpguardMapBansV4Meta, bpf.XdpguardMapBansV6,
	bpf.XdpguardMapCidrV4, bpf.XdpguardMapCidrV6, bpf.XdpguardMapCidrCount,
	bpf.XdpguardMapSynV4, bpf.XdpguardMapSynV6,
	bpf.XdpguardMapGoodV4, bpf.XdpguardMapGoodV6,
	bpf.XdpguardMapSettings, bpf.XdpguardMapStats, bpf.XdpguardMapEvents,
}

// table returns the side of the IPv4 ban table in use, mapping both sides
// on first use.
func (g *Guard) table() (*table4, error) {
	c, sides, err := g.tableState()
	if err != nil {
		return nil, err
	}
	if c.V4Side != sides[0].buckets {
		return nil, fmt.Errorf("IPv4 ban table: settings say sides of %d buckets, the map has %d: pinned by an incompatible version? (xdpguard detach, then start again)", c.V4Side, sides[0].buckets)
	}
	a := c.V4Active & 1
	return sides[a].view(c.V4Mask[a], c.V4Seed)
}

// tableState reads the settings that describe the table, and its sides.
func (g *Guard) tableState() (bpf.XdpguardConfig, [2]*banSide, error) {
	var c bpf.XdpguardConfig
	if err := g.maps.Settings.Lookup(uint32(0), &c); err != nil {
		return c, [2]*banSide{}, fmt.Errorf("read settings: %w", err)
	}
	sides, err := g.banSides()
	return c, sides, err
}

func (g *Guard) banSides() ([2]*banSide, error) {
	g.t4mu.Lock()
	defer g.t4mu.Unlock()
	if g.sides[0] != nil {
		return g.sides, nil
	}
	sides, err := mapSides(g.maps.BansV4, g.maps.BansV4Meta)
	if err != nil {
		return g.sides, err
	}
	g.sides = sides
	return g.sides, nil
}

// lockWrites serialises userspace's writes to the IPv4 ban table across
// processes (the daemon and the CLI), with flock on the pin directory, so
// that no writer uses a side that grow is switching away from.
func (g *Guard) lockWrites() (func(), error) {
	g.wmu.Lock()
	if g.pinRoot == "" {
		return g.wmu.Unlock, nil
	}
	fd, err := unix.Open(g.pinRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		if err = unix.Flock(fd, unix.LOCK_EX); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		g.wmu.Unlock()
		return nil, fmt.Errorf("lock %s for writing: %w", g.pinRoot, err)
	}
	return func() {
		unix.Close(fd) // releases the flock
		g.wmu.Unlock()
	}, nil
}

// New loads the XDP program. With a PinRoot it adopts maps already pinned
// there, so that bans survive a daemon restart and an upgrade, or creates and
// pins them atomically. A fresh set of maps gets DefaultSettings.
func New(opts Options) (*Guard, error) {
	if err := checkKernel(); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK: %w", privilegeHint(err))
	}
	spec, err := bpf.LoadXdpguard()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	sizes := map[string]uint32{
		bpf.XdpguardMapBansV4:     2 * bucketsFor(orDefault(opts.MaxBans, DefaultMaxBans)),
		bpf.XdpguardMapBansV4Meta: 2 * bucketsFor(orDefault(opts.MaxBans, DefaultMaxBans)),
		bpf.XdpguardMapBansV6:     orDefault(opts.MaxBans, DefaultMaxBans),
		bpf.XdpguardMapSynV4:      trackerPairs(orDefault(opts.MaxTracked, DefaultMaxTracked)),
		bpf.XdpguardMapSynV6:      trackerPairs(orDefault(opts.MaxTracked, DefaultMaxTracked)),
		bpf.XdpguardMapCidrV4:     orDefault(opts.MaxCIDR, DefaultMaxCIDR),
		bpf.XdpguardMapCidrV6:     orDefault(opts.MaxCIDR, DefaultMaxCIDR),
		bpf.XdpguardMapGoodV4:     MaxKnownGood,
		bpf.XdpguardMapGoodV6:     MaxKnownGood,
	}
	for name, n := range sizes {
		spec.Maps[name].MaxEntries = n
	}

	g := &Guard{pinRoot: opts.PinRoot}
	var replacements map[string]*ebpf.Map
	if opts.PinRoot != "" {
		replacements, g.created, err = pinnedMaps(spec, opts.PinRoot)
		if err != nil {
			return nil, err
		}
	}

	var objs bpf.XdpguardObjects
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replacements})
	for _, m := range replacements {
		m.Close() // LoadAndAssign holds its own references
	}
	if err != nil {
		if g.created {
			os.RemoveAll(opts.PinRoot) // pins made for a program that never loaded
		}
		return nil, loadError(err)
	}
	g.maps = objs.XdpguardMaps
	g.prog = objs.XdpguardPrograms.Xdpguard
	if opts.PinRoot == "" {
		g.created = true
	}
	if g.created {
		if err := g.SetSettings(DefaultSettings()); err != nil {
			g.Discard()
			return nil, err
		}
	}
	return g, nil
}

// Open reopens the maps pinned under pinRoot without loading the program.
// This is how status, ban and unban work, whether the daemon runs or not.
func Open(pinRoot string) (*Guard, error) {
	if _, err := os.Stat(filepath.Join(pinRoot, bpf.XdpguardMapSettings)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no xdpguard state pinned under %s: is xdpguard attached? (xdpguard attach --iface IF): %w", pinRoot, ErrNotPinned)
		}
		return nil, fmt.Errorf("open pinned state %s: %w", pinRoot, privilegeHint(err))
	}
	pinned := &ebpf.Collection{Maps: make(map[string]*ebpf.Map, len(mapNames))}
	for _, name := range mapNames {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinRoot, name), nil)
		if err != nil {
			pinned.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", filepath.Join(pinRoot, name), privilegeHint(err))
		}
		pinned.Maps[name] = m
	}
	g := &Guard{pinRoot: pinRoot}
	if err := pinned.Assign(&g.maps); err != nil {
		pinned.Close()
		return nil, fmt.Errorf("open pinned state %s: %w", pinRoot, err)
	}
	return g, nil
}

// ErrNotPinned means there is no xdpguard state under the pin root.
var ErrNotPinned = errors.New("not pinned")

// PinRoot returns the directory the Guard pins to, or "".
func (g *Guard) PinRoot() string { return g.pinRoot }

// Program returns the loaded XDP program, or nil for a Guard from Open.
func (g *Guard) Program() *ebpf.Program { return g.prog }

// Close releases this process's handles. Pinned maps and links, and so the
// protection, stay in place.
func (g *Guard) Close() error {
	for _, l := range g.links {
		l.Close()
	}
	if g.prog != nil {
		g.prog.Close()
	}
	g.t4mu.Lock()
	if g.sides[0] != nil {
		g.sides[0].close()
		g.sides = [2]*banSide{}
	}
	g.t4mu.Unlock()
	// All maps, the unpinned per-load ones (the clock cache) included.
	return g.maps.Close()
}

// pinnedMaps returns the maps pinned under root, creating and pinning them
// first if root does not exist yet. Creation pins into a temporary directory
// that is renamed into place, so another process never sees half a set.
func pinnedMaps(spec *ebpf.CollectionSpec, root string) (map[string]*ebpf.Map, bool, error) {
	if err := ensureBPFFS(filepath.Dir(root)); err != nil {
		return nil, false, err
	}
	if _, err := os.Stat(root); err == nil {
		maps, err := adoptMaps(spec, root)
		return maps, false, err
	}

	// bpffs refuses names with a dot, so no ".tmp" suffix.
	tmp, err := os.MkdirTemp(filepath.Dir(root), filepath.Base(root)+"-tmp-")
	if err != nil {
		return nil, false, fmt.Errorf("create pin directory next to %s: %w", root, privilegeHint(err))
	}
	defer os.RemoveAll(tmp)
	for _, name := range mapNames {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			return nil, false, fmt.Errorf("create map %s: %w", name, privilegeHint(err))
		}
		err = m.Pin(filepath.Join(tmp, name))
		m.Close()
		if err != nil {
			return nil, false, fmt.Errorf("pin map %s under %s: %w", name, tmp, err)
		}
	}
	if err := os.Rename(tmp, root); err != nil {
		if !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
			return nil, false, fmt.Errorf("move pins into %s: %w", root, err)
		}
		// Another process won the race: use its maps.
		maps, err := adoptMaps(spec, root)
		return maps, false, err
	}
	maps, err := adoptMaps(spec, root)
	return maps, true, err
}

func adoptMaps(spec *ebpf.CollectionSpec, root string) (map[string]*ebpf.Map, error) {
	maps := make(map[string]*ebpf.Map, len(mapNames))
	for _, name := range mapNames {
		path := filepath.Join(root, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err == nil {
			err = spec.Maps[name].Compatible(m)
			if err != nil {
				m.Close()
				err = fmt.Errorf("%w (the pinned maps come from another xdpguard version or other map sizes; `xdpguard detach` removes them, and their bans)", err)
			}
		}
		if err != nil {
			for _, m := range maps {
				m.Close()
			}
			return nil, fmt.Errorf("adopt pinned map %s: %w", path, privilegeHint(err))
		}
		maps[name] = m
	}
	return maps, nil
}

// ensureBPFFS mounts bpffs on /sys/fs/bpf if dir lies there and nothing is
// mounted, and checks that dir is on a bpffs.
func ensureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if !strings.HasPrefix(dir, "/sys/fs/bpf") {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if dir == "/sys/fs/bpf" || strings.HasPrefix(dir, "/sys/fs/bpf/") {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on /sys/fs/bpf: %w", privilegeHint(err))
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		return nil
	}
	return fmt.Errorf("%s is not on a bpffs (mount -t bpf bpf %s)", dir, dir)
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

// privilegeHint turns a bare EPERM into a message that says what is missing.
func privilegeHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (xdpguard needs CAP_BPF and CAP_NET_ADMIN, or root)", err)
	}
	return err
}

// loadError keeps the verifier's verdict readable: its last lines say why.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := ve.Log
		if len(log) > 20 {
			log = log[len(log)-20:]
		}
		return fmt.Errorf("the kernel's verifier rejected the XDP program: %v\n  verifier log (tail):\n    %s", ve.Cause, strings.Join(log, "\n    "))
	}
	return fmt.Errorf("load XDP program: %w", privilegeHint(err))
}
