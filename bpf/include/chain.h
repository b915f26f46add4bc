/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl chain: every hook has its own PROG_ARRAY xc_chain (xdpctl_maps.h;
 * slot order in enum xc_stage). The root tries slots 0..7; a stage that
 * passes a packet on tries the slots after its own. A tail call into an
 * empty slot falls through to the next; when none is left the caller
 * returns its pass code.
 */
#ifndef XDPCTL_CHAIN_H
#define XDPCTL_CHAIN_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "xdpctl_maps.h"

/*
 * Tail-call slots first..XC_CHAIN_SLOTS-1 in order. first must be a
 * compile-time constant: every call then has a constant index, which the
 * kernel turns into a direct jump. Returns only when no slot took the packet.
 */
static __always_inline void xc_chain_from(void *ctx, const __u32 first)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < XC_CHAIN_SLOTS; i++)
		if (i >= first)
			bpf_tail_call(ctx, &xc_chain, i);
}

#endif /* XDPCTL_CHAIN_H */
