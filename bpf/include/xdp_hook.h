/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl XDP glue: feed the shared parser from an xdp_md and turn a stage
 * verdict into an XDP action. Frame = [data, data_end), bytes counted =
 * data_end - data, no tag stripped by the kernel.
 */
#ifndef XDPCTL_XDP_HOOK_H
#define XDPCTL_XDP_HOOK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"
#include "stage.h"

/* Parse the frame into p (this CPU's xc_pkt: stage.h). Returns the l3
 * class. */
static __always_inline int xc_xdp_parse(struct xdp_md *ctx, struct xc_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	xc_parse(p, data, data_end, 0, (__u32)(data_end - data));
	return p->l3;
}

/* A stage verdict as an XDP action. */
static __always_inline int xc_xdp_action(int verdict)
{
	return verdict == XC_PASS ? XDP_PASS : XDP_DROP;
}

#endif /* XDPCTL_XDP_HOOK_H */
