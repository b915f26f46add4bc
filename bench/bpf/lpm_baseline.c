// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench baseline: the plainest drop list a kernel LPM trie allows. Parse
 * Ethernet and IPv4/IPv6, one LPM trie lookup on the source address, drop
 * on a hit, pass otherwise. No VLANs, no counters, no expiry: it shows what
 * the trie itself costs as it fills, next to xdpctl's prefix expansion.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct lpm_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Sizes are set by bench code before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key4);
	__type(value, __u32);
} lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key6);
	__type(value, __u32);
} lpm_v6 SEC(".maps");

SEC("xdp")
int lpm_baseline(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct lpm_key4 k;

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		k.prefixlen = 32;
		__builtin_memcpy(k.addr, &ip->saddr, 4);
		return bpf_map_lookup_elem(&lpm_v4, &k) ? XDP_DROP : XDP_PASS;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct lpm_key6 k;

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		k.prefixlen = 128;
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
		return bpf_map_lookup_elem(&lpm_v6, &k) ? XDP_DROP : XDP_PASS;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
