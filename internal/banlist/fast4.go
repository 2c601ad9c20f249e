package banlist

import "net/netip"

// parse4 reads the common line, a canonical dotted IPv4 address with an
// optional /length, from bytes: no string per line, which made a million
// lines cost more than banning them. It accepts only what ParsePrefix
// accepts with the same result (FuzzParse4 checks that) and says !ok for
// everything else, which then takes the general path and its messages:
// leading zeros, host bits, anything IPv6.
func parse4(b []byte) (netip.Prefix, bool) {
	var a [4]byte
	i := 0
	for part := range 4 {
		if part > 0 {
			if i >= len(b) || b[i] != '.' {
				return netip.Prefix{}, false
			}
			i++
		}
		v, n := digits(b[i:])
		if n == 0 || n > 3 || v > 255 || (n > 1 && b[i] == '0') {
			return netip.Prefix{}, false
		}
		a[part] = byte(v)
		i += n
	}
	bits := 32
	if i < len(b) {
		if b[i] != '/' {
			return netip.Prefix{}, false
		}
		i++
		v, n := digits(b[i:])
		if n == 0 || n > 2 || v > 32 || (n > 1 && b[i] == '0') || i+n != len(b) {
			return netip.Prefix{}, false
		}
		bits = v
	}
	p := netip.PrefixFrom(netip.AddrFrom4(a), bits)
	if p.Masked() != p {
		return netip.Prefix{}, false
	}
	return p, true
}

// digits reads up to 4 leading decimal digits.
func digits(b []byte) (v, n int) {
	for n < len(b) && n < 4 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int(b[n]-'0')
		n++
	}
	return v, n
}

// bareLine is line without its line ending ("\n" or "\r\n").
func bareLine(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n > 1 && line[n-2] == '\r' {
			line = line[:n-2]
		}
	}
	return line
}
