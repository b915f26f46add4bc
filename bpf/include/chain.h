/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl chain: the stages of one hook run in one program, in the order of
 * enum xc_stage (counter, drop list, load balancer), each only when its bit
 * is set in the hook's xc_stages (a one-entry map). Turning a stage on or
 * off is one map update. The program holds its maps itself: nothing in the data path
 * depends on a pin or on any other user reference.
 */
#ifndef XDPCTL_CHAIN_H
#define XDPCTL_CHAIN_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define XC_MAPS_HOOK
#include "xdpctl_maps.h"

/* The stage bits of this hook, and in *hook its kind (enum xc_hook_kind:
 * the slot of its rule hits); no bits (every packet passes untouched) until
 * the control plane writes them. */
static __always_inline __u32 xc_stages_on(__u32 *hook)
{
	*hook = XC_READ(xc_stages.hook);
	return XC_READ(xc_stages.stages);
}

#define XC_ON(bits, stage) ((bits) & XC_STAGE_BIT(stage))

#endif /* XDPCTL_CHAIN_H */
