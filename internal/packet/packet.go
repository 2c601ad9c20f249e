// Package packet builds Ethernet frames for tests and benchmarks: IPv4 and
// IPv6, VLAN tags, IPv4 options, fragments, IPv6 extension headers and TCP,
// byte by byte, so that malformed variants are as easy to make as good ones.
package packet

import (
	"encoding/binary"
	"net/netip"
)

// TCP flag bits.
const (
	FIN = 1 << 0
	SYN = 1 << 1
	RST = 1 << 2
	PSH = 1 << 3
	ACK = 1 << 4
)

// IP protocol numbers used here.
const (
	ProtoHopOpts  = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNone     = 59
	ProtoDstOpts  = 60
	ProtoMH       = 135
)

// ExtHeader is an IPv6 extension header. Len is the header's length field:
// 8-byte units beyond the first for most, 4-byte units minus 2 for AH.
type ExtHeader struct {
	Proto uint8
	Len   uint8
	// Fragment header only.
	FragOffset uint16 // in 8-byte units
	More       bool
}

// Spec describes one frame.
type Spec struct {
	VLANs     []uint16 // TPIDs, outermost first: 0x8100 or 0x88a8
	EtherType uint16   // overrides the type after the VLAN tags when non-zero
	Src, Dst  netip.Addr
	Proto     uint8 // ProtoTCP unless set

	// IPv4 only.
	IHL        uint8 // header length in words; 5 + len(Options)/4 when zero
	Version    uint8 // 4 when zero
	Options    []byte
	FragOffset uint16 // in 8-byte units
	MoreFrags  bool

	// IPv6 only.
	Ext []ExtHeader

	SrcPort, DstPort uint16
	Seq              uint32 // TCP sequence number
	Flags            uint8
	DataOff          uint8 // TCP header words; 5 when zero
	Payload          []byte
}

// Build serialises the frame.
func Build(s Spec) []byte {
	b := make([]byte, 0, 128)
	b = append(b, 0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1) // dst, src MAC
	for _, tpid := range s.VLANs {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 100) // TCI: VLAN 100
	}
	proto := s.Proto
	if proto == 0 {
		proto = ProtoTCP
	}
	l4 := l4Bytes(s, proto)

	et := s.EtherType
	if s.Src.Is4() {
		if et == 0 {
			et = 0x0800
		}
		b = binary.BigEndian.AppendUint16(b, et)
		b = append(b, ipv4(s, proto, len(l4))...)
	} else {
		if et == 0 {
			et = 0x86dd
		}
		b = binary.BigEndian.AppendUint16(b, et)
		b = append(b, ipv6(s, proto, len(l4))...)
	}
	return append(b, l4...)
}

func l4Bytes(s Spec, proto uint8) []byte {
	switch proto {
	case ProtoTCP:
		off := s.DataOff
		if off == 0 {
			off = 5
		}
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], s.SrcPort)
		binary.BigEndian.PutUint16(h[2:], s.DstPort)
		binary.BigEndian.PutUint32(h[4:], s.Seq)
		h[12] = off << 4
		h[13] = s.Flags
		binary.BigEndian.PutUint16(h[14:], 65535)
		return append(h, s.Payload...)
	case ProtoUDP:
		h := make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], s.SrcPort)
		binary.BigEndian.PutUint16(h[2:], s.DstPort)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(s.Payload)))
		return append(h, s.Payload...)
	}
	return append([]byte{8, 0, 0, 0, 0, 0, 0, 0}, s.Payload...)
}

func ipv4(s Spec, proto uint8, l4len int) []byte {
	ihl := s.IHL
	if ihl == 0 {
		ihl = 5 + uint8(len(s.Options)/4)
	}
	ver := s.Version
	if ver == 0 {
		ver = 4
	}
	h := make([]byte, 20, 20+len(s.Options))
	h[0] = ver<<4 | ihl&0xf
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(s.Options)+l4len))
	frag := s.FragOffset & 0x1fff
	if s.MoreFrags {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = 64
	h[9] = proto
	src, dst := s.Src.As4(), s.Dst.As4()
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	h = append(h, s.Options...)
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return h
}

func ipv6(s Spec, proto uint8, l4len int) []byte {
	var ext []byte
	for i, e := range s.Ext {
		next := proto
		if i+1 < len(s.Ext) {
			next = s.Ext[i+1].Proto
		}
		switch e.Proto {
		case ProtoFragment:
			off := e.FragOffset << 3
			if e.More {
				off |= 1
			}
			ext = append(ext, next, 0, byte(off>>8), byte(off), 0, 0, 0, 1)
		case ProtoAH:
			h := make([]byte, (int(e.Len)+2)*4)
			h[0], h[1] = next, e.Len
			ext = append(ext, h...)
		default:
			h := make([]byte, (int(e.Len)+1)*8)
			h[0], h[1] = next, e.Len
			if len(h) > 2 {
				h[2] = 1 // PadN option covering the rest
				h[3] = byte(len(h) - 4)
			}
			ext = append(ext, h...)
		}
	}
	first := proto
	if len(s.Ext) > 0 {
		first = s.Ext[0].Proto
	}
	h := make([]byte, 40)
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+l4len))
	h[6] = first
	h[7] = 64
	src, dst := s.Src.As16(), s.Dst.As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	return append(h, ext...)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
