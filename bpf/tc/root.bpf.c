// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpctl TC root: attached to the hook, tries every chain slot in order. */
#include <linux/pkt_cls.h>
#include "chain.h"

SEC("tc")
int xc_root(struct __sk_buff *ctx)
{
	xc_chain_from(ctx, 0);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "Dual BSD/GPL";
