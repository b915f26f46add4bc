// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpctl presence bitmap builder, never attached: the control plane loads
 * it over the pinned drop-list maps and runs it with BPF_PROG_TEST_RUN to
 * fill the bitmap of the rule set it has just written (bits.h).
 */
#include "bits.h"

SEC("xdp")
int xc_bits_build(struct xdp_md *ctx)
{
	return xc_bits_run(ctx);
}

char _license[] SEC("license") = "Dual BSD/GPL";
