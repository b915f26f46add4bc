// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench floor: drop every frame and count it per CPU. Attached where a
 * classifier under test would be, it shows what receiving a frame costs
 * before any classification.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drop_cnt SEC(".maps");

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&drop_cnt, &zero);

	if (c)
		*c += 1;
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
