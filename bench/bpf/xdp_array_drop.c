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
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} array_drop_cnt SEC(".maps");

SEC("xdp")
int xdp_array_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	const struct array_drop_bucket *b;
	__u32 zero = 0, a, h, hit = 0;
	__u64 *c;
	int i;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	a = ip->saddr;
	h = (a * ARRAY_DROP_MUL) >> (32 - ARRAY_DROP_BITS);
	b = bpf_map_lookup_elem(&array_src, &h);
	if (!b)
		return XDP_PASS;
#pragma unroll
	for (i = 0; i < 8; i++)
		hit |= b->used[i] && b->addr[i] == a;
	if (!hit)
		return XDP_PASS;
	c = bpf_map_lookup_elem(&array_drop_cnt, &zero);
	if (c)
		*c += 1;
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
