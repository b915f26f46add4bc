// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench reference: the least a hash-based drop list does per frame. Drop an
 * IPv4 frame whose source address is a key of one plain hash (unpreallocated,
 * 2M entries, as xdpctl's xc_v4_l32 band), count it per CPU, pass anything
 * else. No VLANs, no IPv6, no prefixes, no per-rule accounting: the live-frames
 * rows put it between the drop-everything floor and xdpctl's hook, so a reader
 * sees how much of the hook's cost any exact-address lookup pays here.
 */
#include "ref_drop.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2097152);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} hash_src SEC(".maps");

REF_DROP_COUNT(hash_drop_cnt);

SEC("xdp")
int xdp_hash_drop(struct xdp_md *ctx)
{
	__u32 saddr;

	if (!ref_ipv4_src(ctx, &saddr) || !bpf_map_lookup_elem(&hash_src, &saddr))
		return XDP_PASS;
	return ref_drop(&hash_drop_cnt);
}

char _license[] SEC("license") = "Dual BSD/GPL";
