package config

import (
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xdpguard/xdpguard/internal/banlist"
)

// decoder walks the YAML tree alongside the Config type. yaml.v3's own
// strict mode (KnownFields) rejects unknown keys too, but its messages name
// Go types and lines ("field prots not found in type config.Kernel"), not
// the key path an operator needs; and it stops at the first bad value. This
// walk does the same checks, reports every one by key path, and leaves keys
// that are absent at their defaults.
type decoder struct {
	problems []Problem
	lines    map[string]int // key path -> line, for Validate's problems
}

var (
	nodeType     = reflect.TypeOf(yaml.Node{})
	prefixType   = reflect.TypeOf(netip.Prefix{})
	durationType = reflect.TypeOf(time.Duration(0))
)

func valueOf(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.problems = append(d.problems, Problem{Key: key, Msg: fmt.Sprintf(format, args...), Line: n.Line})
}

// line finds the line of key or, failing that, of its nearest parent, so
// that "kernel.ports[2]" found by Validate points at the element.
func (d *decoder) line(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	d.lines[key] = n.Line
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		// Nothing in this file needs them, and following aliases while
		// walking would let a small file expand without bound.
		d.fail(n, key, "YAML anchors and aliases are not supported")
		return
	}
	switch {
	case v.Type() == nodeType:
		if !isNull(n) && n.Kind != yaml.MappingNode {
			d.fail(n, key, "must be a mapping, got %s", kindName(n))
			return
		}
		if !isNull(n) {
			v.Set(reflect.ValueOf(*n))
		}
		return
	case v.Type() == prefixType:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "must be an address or CIDR, got %s", kindName(n))
			return
		}
		p, err := banlist.ParsePrefix(n.Value)
		if err != nil {
			d.fail(n, key, "%q: %v", n.Value, err)
			return
		}
		v.Set(reflect.ValueOf(p))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, key)
	case reflect.Slice:
		if isNull(n) { // "files:" with nothing after it: an empty list
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "must be a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.value(e, s.Index(i), fmt.Sprintf("%s[%d]", key, i))
		}
		v.Set(s)
	case reflect.Map:
		// A map in the file replaces the default whole: {} empties it.
		if isNull(n) {
			v.Set(reflect.MakeMap(v.Type()))
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, key, "must be a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			sub := key + "." + kn.Value
			before := len(d.problems)
			d.value(kn, k, sub)
			d.value(vn, e, sub)
			if len(d.problems) > before {
				continue
			}
			if m.MapIndex(k).IsValid() {
				d.fail(kn, sub, "listed twice")
				continue
			}
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		d.scalar(n, v, key)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "must be a mapping, got %s", kindName(n))
		return
	}
	fields := map[string]int{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			fields[name] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, key, "keys must be plain names, got %s", kindName(k))
			continue
		}
		sub := k.Value
		if key != "" {
			sub = key + "." + k.Value
		}
		fi, ok := fields[k.Value]
		if !ok {
			d.fail(k, sub, "unknown key (known here: %s)", known(fields))
			continue
		}
		if seen[k.Value] {
			d.fail(k, sub, "duplicate key")
			continue
		}
		seen[k.Value] = true
		d.value(val, v.Field(fi), sub)
	}
}

func known(fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, key, "must be a single value, got %s", kindName(n))
		return
	}
	if isNull(n) {
		if v.Kind() == reflect.String {
			v.SetString("")
			return
		}
		d.fail(n, key, "missing value")
		return
	}
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		// The typed enums (xdp_mode, ban_scope): their own parser is the
		// one name table, and its error names what is allowed.
		if n.Tag != "!!str" {
			d.fail(n, key, "must be a name, got %s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
		} else if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(n, key, "%v", err)
		}
		return
	}
	// A value must parse and also carry its kind's YAML tag, so that a
	// quoted "80" is not taken for a number; format reports it when not.
	parsed := func(err error, tag, format string) bool {
		if err != nil || n.Tag != tag {
			d.fail(n, key, format, n.Value)
			return false
		}
		return true
	}
	switch {
	case v.Type() == durationType:
		// Decode by hand: the value must be a string with a unit, never
		// a bare number (is 600 seconds or nanoseconds?).
		if dur, err := time.ParseDuration(n.Value); parsed(err, "!!str", "invalid duration %q (write a number with a unit: \"90s\", \"10m\", \"1h\")") {
			v.SetInt(int64(dur))
		}
	case v.Kind() == reflect.Bool:
		if b, err := strconv.ParseBool(n.Value); parsed(err, "!!bool", "must be true or false, got %q") {
			v.SetBool(b)
		}
	case v.Kind() == reflect.Int:
		if i, err := strconv.ParseInt(n.Value, 10, 64); parsed(err, "!!int", "must be a decimal integer, got %q") {
			v.SetInt(i)
		}
	case v.Kind() == reflect.Uint16:
		if i, err := strconv.ParseUint(n.Value, 10, 16); parsed(err, "!!int", "must be a port number 1-65535, got %q") {
			v.SetUint(i)
		}
	case v.Kind() == reflect.String:
		if n.Tag != "!!str" {
			// yes, 1.5, null... as a name or path is almost surely a
			// mistake; quoting says it is meant.
			d.fail(n, key, "must be a string, got %s %q (quote it if meant)", strings.TrimPrefix(n.Tag, "!!"), n.Value)
			return
		}
		v.SetString(n.Value)
	default:
		d.fail(n, key, "unsupported type %s", v.Type()) // a bug in Config
	}
}
