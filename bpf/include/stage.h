/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl stage helpers: the verdict the shared stage logic (counter.h,
 * droplist.h) returns, which xdp_hook.h / tc_hook.h turn into XDP_* /
 * TC_ACT_*, and the per-CPU packet and byte count both stages keep.
 */
#ifndef XDPCTL_STAGE_H
#define XDPCTL_STAGE_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "xdpctl_abi.h"

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

#endif /* XDPCTL_STAGE_H */
