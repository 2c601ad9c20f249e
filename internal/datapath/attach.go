package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Mode is how the program attaches to an interface.
type Mode uint8

const (
	// ModeAuto tries the driver and falls back to generic with a warning.
	ModeAuto Mode = iota
	// ModeNative runs in the driver, before an skb exists.
	ModeNative
	// ModeGeneric runs after skb allocation; works everywhere, costs more.
	ModeGeneric
)

var modeNames = [...]string{ModeAuto: "auto", ModeNative: "native", ModeGeneric: "generic"}

func (m Mode) String() string { return listName(modeNames[:], "mode", m) }

// ParseMode parses "auto", "native" (or "driver") and "generic" (or "skb").
func ParseMode(s string) (Mode, error) {
	switch s {
	case "driver", "drv":
		return ModeNative, nil
	case "skb":
		return ModeGeneric, nil
	}
	return parseListed[Mode](modeNames[:], s)
}

// MarshalText and UnmarshalText let the configuration hold a Mode.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m *Mode) UnmarshalText(b []byte) (err error) {
	*m, err = ParseMode(string(b))
	return err
}

const linkPrefix = "link_"

// ErrForeignProgram means an interface already runs an XDP program that
// xdpguard did not attach. It is never replaced silently.
var ErrForeignProgram = errors.New("another XDP program is attached")

// Attach attaches the loaded program to ifname and returns the mode used. If
// xdpguard is already attached there (a pinned link exists), the link is
// updated in place to this program: no packet goes unfiltered meanwhile.
func (g *Guard) Attach(ifname string, mode Mode) (Mode, error) {
	if g.prog == nil {
		return 0, errors.New("attach: no program loaded (the Guard came from Open)")
	}
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("attach to %s: no such interface", ifname)
	}
	if g.pinRoot != "" {
		pin := filepath.Join(g.pinRoot, linkPrefix+ifname)
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			defer l.Close()
			if err := l.Update(g.prog); err != nil {
				return 0, fmt.Errorf("upgrade program on %s: %w", ifname, privilegeHint(err))
			}
			cur, _ := attachedMode(ifname)
			return cur, nil
		}
	}
	if id, _ := attachedProgram(ifname); id != 0 {
		return 0, fmt.Errorf("attach to %s: %w (program id %d); remove it first, e.g. `ip link set dev %s xdp off`",
			ifname, ErrForeignProgram, id, ifname)
	}

	var l link.Link
	used := mode
	switch mode {
	case ModeNative:
		l, err = link.AttachXDP(link.XDPOptions{Program: g.prog, Interface: iface.Index, Flags: link.XDPDriverMode})
	case ModeGeneric:
		l, err = link.AttachXDP(link.XDPOptions{Program: g.prog, Interface: iface.Index, Flags: link.XDPGenericMode})
	default:
		used = ModeNative
		l, err = link.AttachXDP(link.XDPOptions{Program: g.prog, Interface: iface.Index, Flags: link.XDPDriverMode})
		if err != nil && !errors.Is(err, unix.EPERM) {
			slog.Warn("native XDP failed, falling back to generic mode, which costs about as much as nftables",
				"iface", ifname, "error", err)
			used = ModeGeneric
			l, err = link.AttachXDP(link.XDPOptions{Program: g.prog, Interface: iface.Index, Flags: link.XDPGenericMode})
		}
	}
	if err != nil {
		return 0, fmt.Errorf("attach to %s in %s mode: %w", ifname, used, privilegeHint(err))
	}
	if g.pinRoot != "" {
		err := l.Pin(filepath.Join(g.pinRoot, linkPrefix+ifname))
		l.Close() // the pin keeps it attached
		if err != nil {
			return 0, fmt.Errorf("pin link for %s: %w", ifname, err)
		}
	} else {
		g.links = append(g.links, l)
	}
	return used, nil
}

// Interface is an attachment as status shows it.
type Interface struct {
	Name      string `json:"name"`
	Mode      string `json:"mode"`
	ProgramID uint32 `json:"program_id"`
	Missing   bool   `json:"missing,omitempty"` // pinned, but the interface is gone
}

// Interfaces lists the interfaces with a pinned xdpguard link.
func (g *Guard) Interfaces() ([]Interface, error) {
	names, err := g.pinnedLinks()
	if err != nil {
		return nil, err
	}
	var out []Interface
	for _, name := range names {
		it := Interface{Name: name}
		if id, err := attachedProgram(name); err != nil {
			it.Missing = true
		} else {
			it.ProgramID = id
			m, _ := attachedMode(name)
			it.Mode = m.String()
		}
		out = append(out, it)
	}
	return out, nil
}

// Detach removes the program from ifname.
func (g *Guard) Detach(ifname string) error {
	if g.pinRoot == "" {
		return errors.New("detach: nothing pinned")
	}
	pin := filepath.Join(g.pinRoot, linkPrefix+ifname)
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return fmt.Errorf("detach from %s: not attached by xdpguard (%w)", ifname, err)
	}
	defer l.Close()
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("detach from %s: %w", ifname, err)
	}
	return nil // closing the last reference detaches
}

// DetachAll removes the program from every interface and deletes every pin,
// bans included. This is uninstall.
func (g *Guard) DetachAll() error {
	names, err := g.pinnedLinks()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if err := g.Detach(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Removing the last pin of a link detaches it from a kernel work
	// queue, a moment later; BPF_LINK_DETACH detaches the steering now,
	// so that it has stopped when this returns.
	if l, err := link.LoadPinnedLink(filepath.Join(g.pinRoot, priorityLinkPin), nil); err == nil {
		err = l.Detach()
		l.Close()
		if err != nil {
			return fmt.Errorf("detach the priority program: %w", err)
		}
	}
	if err := os.RemoveAll(g.pinRoot); err != nil {
		return fmt.Errorf("remove pins under %s: %w", g.pinRoot, err)
	}
	return nil
}

func (g *Guard) pinnedLinks() ([]string, error) {
	if g.pinRoot == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(g.pinRoot)
	if err != nil {
		return nil, fmt.Errorf("read pins under %s: %w", g.pinRoot, err)
	}
	var names []string
	for _, e := range ents {
		if name, ok := strings.CutPrefix(e.Name(), linkPrefix); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func attachedProgram(ifname string) (uint32, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return 0, err
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId, nil
	}
	return 0, nil
}

func attachedMode(ifname string) (Mode, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return 0, err
	}
	if x := l.Attrs().Xdp; x != nil {
		switch x.AttachMode {
		case nl.XDP_ATTACHED_DRV:
			return ModeNative, nil
		case nl.XDP_ATTACHED_SKB:
			return ModeGeneric, nil
		}
	}
	return ModeAuto, nil
}
