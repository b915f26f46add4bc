// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench traffic generator. Run with BPF_PROG_TEST_RUN and
 * BPF_F_TEST_XDP_LIVE_FRAMES: every injected frame is redirected out of the
 * interface whose index bench code writes into gen_cfg[0] (a veth end), so
 * it arrives on the peer as received traffic.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_cfg SEC(".maps");

SEC("xdp")
int gen_redirect(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&gen_cfg, &zero);

	if (!ifindex || !*ifindex)
		return XDP_ABORTED;
	return bpf_redirect(*ifindex, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
