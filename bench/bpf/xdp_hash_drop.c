// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench reference: the least a hash-based drop list does per frame. Drop an
 * IPv4 frame whose source address is a key of one plain hash (unpreallocated,
 * 2M entries, as xdpctl's xc_v4_l32 band), count it per CPU, pass anything
 * else. No VLANs, no IPv6, no prefixes, no per-rule accounting: the live-frames
 * rows put it between the drop-everything floor and xdpctl's hook, so a reader
 * sees how much of the hook's cost any exact-address lookup pays here.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2097152);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} hash_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hash_drop_cnt SEC(".maps");

SEC("xdp")
int xdp_hash_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	__u32 zero = 0;
	__u64 *c;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (!bpf_map_lookup_elem(&hash_src, &ip->saddr))
		return XDP_PASS;
	c = bpf_map_lookup_elem(&hash_drop_cnt, &zero);
	if (c)
		*c += 1;
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
