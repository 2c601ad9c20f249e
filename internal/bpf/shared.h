// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Maps that both programs read: the XDP program (xdpguard.c) and the
// priority steering (priority.c). The priority program is loaded with the
// XDP program's maps in their place (MapReplacements), which the loader
// allows only when the definitions agree: hence one definition, here.

#ifndef SHARED_H
#define SHARED_H

#include "xdpguard.h"

// Known-good sources (they logged in), masked to the ban granularity and
// written only by userspace. Looked up only for SYNs to protected ports
// under admission or over the rate, so a plain hash map costs nothing on
// the ban path; not preallocated, so an empty one costs its buckets only.
// The value is unused.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} good_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct in6_key);
	__type(value, __u8);
} good_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} settings SEC(".maps");

#endif
