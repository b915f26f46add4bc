// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench: the kernel side of a bulk import. Two hash maps with the layout of
 * xdpctl's xc_v4_l32 (8-byte key, 16-byte value, 2M entries), one allocated
 * per element (BPF_F_NO_PREALLOC, as xdpctl declares its bands) and one
 * preallocated, so batch-update rates can be compared. The program only
 * makes the object loadable.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct key8 {
	__u32 dir;
	__u32 addr;
};

struct val16 {
	__u64 a;
	__u64 b;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2097152);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key8);
	__type(value, struct val16);
} h_noprealloc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2097152);
	__type(key, struct key8);
	__type(value, struct val16);
} h_prealloc SEC(".maps");

SEC("xdp")
int map_insert_anchor(struct xdp_md *ctx)
{
	struct key8 k = {};

	return bpf_map_lookup_elem(&h_noprealloc, &k) || bpf_map_lookup_elem(&h_prealloc, &k) ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
