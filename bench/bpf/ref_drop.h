/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the bench's exact-address references (xdp_hash_drop.c,
 * xdp_array_drop.c) share: the frame's IPv4 source after the least header
 * checking, and a dropped frame counted in slot 0 of a per-CPU array.
 * Only the lookup between them differs.
 */
#ifndef BENCH_REF_DROP_H
#define BENCH_REF_DROP_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define REF_DROP_COUNT(name) \
struct { \
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
	__uint(max_entries, 1); \
	__type(key, __u32); \
	__type(value, __u64); \
} name SEC(".maps")

/* The IPv4 source of the frame into *saddr (network order); 0 when the
 * frame is not IPv4 or too short. */
static __always_inline int ref_ipv4_src(struct xdp_md *ctx, __u32 *saddr)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	*saddr = ip->saddr;
	return 1;
}

/* Count the frame in the per-CPU array cnt and drop it. */
static __always_inline int ref_drop(void *cnt)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(cnt, &zero);

	if (c)
		*c += 1;
	return XDP_DROP;
}

#endif /* BENCH_REF_DROP_H */
