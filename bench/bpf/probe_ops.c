// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench probes that price single ingredients of a drop path with
 * BPF_PROG_TEST_RUN (cost = probe - empty):
 *
 *   empty      return XDP_DROP: the test-run loop itself
 *   ktime8     8 x bpf_ktime_get_boot_ns()  (xdpctl stamps last_hit_ns)
 *   coarse8    8 x bpf_ktime_get_coarse_ns() (a cheaper clock, tick resolution)
 *   jiffies8   8 x bpf_jiffies64()
 *   atomic8    8 x atomic add on one array value (xdpctl's rule counters)
 *   add8       8 x plain add on one per-CPU array value (xc_dl_cnt style)
 *   lookup8    8 x lookup in a one-entry ARRAY (a map lookup's floor)
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct cell {
	__u64 a;
	__u64 b;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cell);
} probe_arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cell);
} probe_pcpu SEC(".maps");

SEC("xdp")
int empty(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int ktime8(struct xdp_md *ctx)
{
	__u64 s = 0;
	int i;

#pragma unroll
	for (i = 0; i < 8; i++)
		s += bpf_ktime_get_boot_ns();
	return s ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int coarse8(struct xdp_md *ctx)
{
	__u64 s = 0;
	int i;

#pragma unroll
	for (i = 0; i < 8; i++)
		s += bpf_ktime_get_coarse_ns();
	return s ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int jiffies8(struct xdp_md *ctx)
{
	__u64 s = 0;
	int i;

#pragma unroll
	for (i = 0; i < 8; i++)
		s += bpf_jiffies64();
	return s ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int atomic8(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct cell *c = bpf_map_lookup_elem(&probe_arr, &zero);
	int i;

	if (!c)
		return XDP_ABORTED;
#pragma unroll
	for (i = 0; i < 8; i++)
		__sync_fetch_and_add(&c->a, 1);
	return XDP_DROP;
}

SEC("xdp")
int add8(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct cell *c = bpf_map_lookup_elem(&probe_pcpu, &zero);
	volatile __u64 *p;
	int i;

	if (!c)
		return XDP_ABORTED;
	p = &c->a;
#pragma unroll
	for (i = 0; i < 8; i++)
		*p += 1;
	return XDP_DROP;
}

SEC("xdp")
int lookup8(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 s = 0;
	struct cell *c;
	int i;

#pragma unroll
	for (i = 0; i < 8; i++) {
		c = bpf_map_lookup_elem(&probe_arr, &k);
		if (c)
			s += c->b;
		k = (__u32)s & 0;
	}
	return s ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
