/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl sizes and limits: every map's default max_entries and every bound
 * the programs loop or check against, in one place. No other file under
 * bpf/ spells a size of its own.
 *
 * An enum rather than #defines: the values are integer constants to the
 * compiler all the same, and xdpctl_btf.h puts the enum into the BTF of every
 * object, where tests/unit/test_abi.py compares each value with its Python
 * copy.
 */
#ifndef XDPCTL_CONSTS_H
#define XDPCTL_CONSTS_H

enum xc_consts {
	/* Hook program: xc_stages holds one entry. */
	XC_STAGES_ENTRIES     = 1,
	XC_PKT_ENTRIES        = 1,     /* xc_pkt: this CPU's parsed packet */

	/* Per-hook counters. */
	XC_PROTO_SLOTS        = 64,    /* xc_proto: l3 * XC_L4_MAX + l4, then extras */
	XC_DL_SLOTS           = 16,    /* xc_dl_cnt: one per enum xc_dl_reason */

	/* Shared maps: default max_entries (the control plane may resize). */
	XC_CFG_ENTRIES        = 1,
	XC_V4_L16_DIR_SLOTS   = 65536, /* xc_v4_l16 slots per direction: addr >> 16 */
	XC_V4_L16_ENTRIES     = 2 * XC_V4_L16_DIR_SLOTS,
	XC_V4_L24_ENTRIES     = 1048576,
	XC_V4_L32_ENTRIES     = 2097152,
	XC_V6_L128_ENTRIES    = 1048576,
	XC_V6_L64_ENTRIES     = 1048576,
	XC_V6_L48_ENTRIES     = 262144,
	XC_V6_L32_ENTRIES     = 262144,
	XC_V6_TRIE_ENTRIES    = 262144,
	XC_PORT_TRIE_ENTRIES  = 65536,
	XC_MGMT_ENTRIES       = 4096,
	XC_RULE_STATS_ENTRIES = 2097152,
	XC_RULE_HOOKS         = 3,     /* xc_rule_stats slots: one per enum xc_hook_kind */
	/* Presence bitmap of each rule set (xc_bits): u64 words, then one
	 * word that says which revision the bits cover. */
	XC_BITS_V4_BITS       = 1 << 25, /* IPv4: dir << 24 | addr >> 8 */
	XC_BITS_V6_BITS       = 1 << 25, /* IPv6: dir << 24 | address bits 3..26 */
	XC_BITS_WORDS         = (XC_BITS_V4_BITS + XC_BITS_V6_BITS) / 64,
	XC_BITS_MARK          = XC_BITS_WORDS, /* index of the revision word */
	XC_BITS_ENTRIES       = XC_BITS_WORDS + 1,
	XC_BITS_V6_SHIFT      = 5,     /* IPv6: the top 32 bits >> 5, less bits 0..2 */
	/* IPv4 host table of each rule set (xc_v4_oa): buckets, then one
	 * bucket whose first slot says which revision the table covers. */
	XC_OA4_BITS           = 19,
	XC_OA4_BUCKETS        = 1 << XC_OA4_BITS,
	XC_OA4_MARK           = XC_OA4_BUCKETS, /* index of the revision bucket */
	XC_V4_OA_ENTRIES      = XC_OA4_BUCKETS + 1,
	XC_OA4_SLOTS          = 4,     /* entries per 64-byte bucket */
	XC_CLOCK_ENTRIES      = 1,     /* xc_clock: the program's clock cache */

	/* Drop list. */
	XC_TRIE_RETRY         = 4,     /* lookups per LPM trie when entries have expired */
	XC_TRIE6_PLEN_BASE    = 32,    /* xc_trie6_key bits before addr (dir) */
	XC_PORT_PLEN_BASE     = 64,    /* xc_port_key bits before addr (dir .. pad) */
	XC_MGMT_V4_PLEN       = 96,    /* xc_mgmt: an IPv4 prefix is ::ffff:0:0/96 + plen */

	/* Parser. */
	XC_VLAN_MAX           = 2,     /* tags parsed; one more makes the frame L3_OTHER */
	XC_IPV6_EXT_MAX       = 8,     /* extension headers walked before L4_MALFORMED */
	XC_PARSE_MAX_OFF      = 0x7fff, /* offsets past this are impossible (8 headers of at most 2048 bytes) */
	XC_ICMPV6_ND_MIN      = 133,   /* neighbour discovery: router solicitation .. */
	XC_ICMPV6_ND_MAX      = 137,   /* .. redirect */
	/* L4 header bytes that must be in the frame. */
	XC_L4_HLEN_TCP        = 20,
	XC_L4_HLEN_UDP        = 8,
	XC_L4_HLEN_SCTP       = 12,    /* common header: ports, tag, checksum */
	XC_L4_HLEN_ICMP       = 4,     /* type, code, checksum (ICMP and ICMPv6) */
	XC_L4_HLEN_GRE        = 4,     /* flags, protocol */

	/* TC: bytes pulled into the linear part when a header runs past it
	 * (L2 + IPv6 + a long extension chain + L4). */
	XC_TC_PULL_MAX        = 512,

	/* Load balancer (docs/lb.md). Per hook: */
	XC_LB_HOOK_ENTRIES    = 1,     /* xc_lb_hook: interface MAC, flags */
	XC_LB_SLOTS           = 16,    /* xc_lb_cnt: one per enum xc_lb_reason */
	/* Shared: */
	XC_LB_VIPS_ENTRIES    = 1024,  /* xc_lb_vips: (VIP, protocol, port) -> ring region */
	XC_LB_VIP_CNT_ENTRIES = XC_LB_VIPS_ENTRIES,     /* xc_lb_vip_cnt: by vip_id */
	XC_LB_BACKENDS_ENTRIES = 4096, /* xc_lb_backends: by backend id (0: none) */
	XC_LB_BE_CNT_ENTRIES  = XC_LB_BACKENDS_ENTRIES, /* xc_lb_be_cnt: by backend id */
	XC_LB_RING_ENTRIES    = 2097152, /* xc_lb_ring: backend ids, one region per table */
	XC_LB_CONN_ENTRIES    = 131072, /* xc_lb_conn: LRU connection table */
	XC_LB_RING_DEFAULT    = 65537, /* Maglev table size of a VIP unless set (prime) */
	XC_LB_RING_MAX        = 1048573, /* largest table size (prime < 2^20) */
	XC_LB_HASH_SEED       = 0x5bd1e995, /* flow hash seed (xdpctl/core/lb/maglev.py) */
	XC_LB_ICMP_PULL       = 128,   /* TC: bytes pulled to read an ICMP error's inner headers */

	/* Packet samples (sample.h), per hook: */
	XC_SMP_CFG_ENTRIES    = 1,     /* xc_smp_cfg: the listener's settings */
	XC_SMP_BUDGET_ENTRIES = 1,     /* xc_smp_budget: per CPU, this second's samples */
	XC_SMP_RB_ENTRIES     = 262144, /* xc_smp_rb: ring buffer bytes (a power of 2 pages) */
	XC_SAMPLE_BYTES       = 128,   /* frame bytes a sample carries at most */
};

#endif /* XDPCTL_CONSTS_H */
