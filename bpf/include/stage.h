/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl stage helpers: the verdict the shared stage logic (counter.h,
 * droplist.h) returns, which xdp_hook.h / tc_hook.h turn into XDP_* /
 * TC_ACT_*, the per-CPU packet and byte count both stages keep, and the
 * per-CPU struct xc_pkt the parser fills.
 */
#ifndef XDPCTL_STAGE_H
#define XDPCTL_STAGE_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"

#define XC_MAPS_PKT
#include "xdpctl_maps.h"

enum xc_verdict {
	XC_PASS = 0, /* go on with the next stage */
	XC_DROP = 1, /* XDP_DROP / TC_ACT_SHOT */
};

/* One more packet of len bytes in slot of a PERCPU_ARRAY of struct
 * xc_counter (plain adds: the slot is this CPU's own). */
static __always_inline void xc_count(void *map, __u32 slot, __u32 len)
{
	struct xc_counter *c = bpf_map_lookup_elem(map, &slot);

	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

/*
 * This CPU's struct xc_pkt: the parser's output, which the stages read.
 * In a map value rather than on the stack so that the verifier does not
 * carry what the parser wrote (each outcome a different constant) into the
 * stages: they are checked once over "some packet", not once per parser
 * outcome, with the parser inlined (no BPF-to-BPF call on the packet's
 * way). A hook's program never runs twice at once on one CPU (XDP and TC
 * run with bottom halves off), and each hook has its own xc_pkt.
 */
static __always_inline struct xc_pkt *xc_pkt_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xc_pkt, &zero);
}

#endif /* XDPCTL_STAGE_H */
