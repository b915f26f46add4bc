/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl stage verdict: what the shared stage logic (counter.h,
 * droplist.h) returns; hook.h maps it to XDP_* / TC_ACT_*.
 */
#ifndef XDPCTL_STAGE_H
#define XDPCTL_STAGE_H

enum xc_verdict {
	XC_PASS = 0, /* go on with the next chain slot */
	XC_DROP = 1, /* XDP_DROP / TC_ACT_SHOT */
};

#endif /* XDPCTL_STAGE_H */
