// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench harness for cache-cold lookups. BPF_PROG_TEST_RUN repeats one frame;
 * this program writes the next source address from spray_addrs into that
 * frame (walking the array in order, wrapping at spray_cfg[0]) and then
 * tail-calls the program under test in spray_next[0]. Consecutive packets
 * thus carry different sources, in the random order bench code stored them,
 * and the program under test looks up a different key every time.
 *
 * The cost of this harness is measured by tail-calling a program that only
 * returns (probe_ops.c: empty) and subtracted.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct spray_addr {
	__u8 a[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} spray_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} spray_pos SEC(".maps");

/* Size set by bench code before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct spray_addr);
} spray_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} spray_next SEC(".maps");

SEC("xdp")
int spray(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct spray_addr *a;
	__u32 zero = 0, idx, *n, *pos;

	n = bpf_map_lookup_elem(&spray_cfg, &zero);
	pos = bpf_map_lookup_elem(&spray_pos, &zero);
	if (!n || !pos || !*n)
		return XDP_ABORTED;
	idx = *pos;
	if (idx >= *n)
		idx = 0;
	*pos = idx + 1;
	a = bpf_map_lookup_elem(&spray_addrs, &idx);
	if (!a || (void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(&ip->saddr, a->a, 4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(&ip6->saddr, a->a, 16);
	}
	bpf_tail_call(ctx, &spray_next, 0);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "Dual BSD/GPL";
