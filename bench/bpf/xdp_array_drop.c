// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench reference: an exact-address drop list that never calls into the
 * kernel. The addresses sit in an open-addressed table held in an ARRAY map
 * (whose lookup the verifier inlines): bucket = top bits of a multiplicative
 * hash of the source, eight addresses per 64-byte bucket, looked at in one
 * pass. An address that did not fit its bucket is not in the table (bench
 * code reports how many). Beside xdp_hash_drop.c in the live-frames rows, it
 * shows what the kernel's hash lookup itself costs per frame.
 */
#include "ref_drop.h"

#define ARRAY_DROP_BITS 18 /* 262,144 buckets, 2M slots: bench/nft.py */
#define ARRAY_DROP_MUL 0x9E3779B1u

struct array_drop_bucket {
	__u32 addr[8]; /* network order, as in the header */
	__u32 used[8]; /* nonzero: addr[i] is in the table */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << ARRAY_DROP_BITS);
	__type(key, __u32);
	__type(value, struct array_drop_bucket);
} array_src SEC(".maps");

REF_DROP_COUNT(array_drop_cnt);

SEC("xdp")
int xdp_array_drop(struct xdp_md *ctx)
{
	const struct array_drop_bucket *b;
	__u32 a, h, hit = 0;
	int i;

	if (!ref_ipv4_src(ctx, &a))
		return XDP_PASS;
	h = (a * ARRAY_DROP_MUL) >> (32 - ARRAY_DROP_BITS);
	b = bpf_map_lookup_elem(&array_src, &h);
	if (!b)
		return XDP_PASS;
#pragma unroll
	for (i = 0; i < 8; i++)
		hit |= b->used[i] && b->addr[i] == a;
	return hit ? ref_drop(&array_drop_cnt) : XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
