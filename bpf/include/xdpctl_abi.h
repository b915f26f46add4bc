/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl map ABI: every key and value layout shared between the BPF
 * classifiers and the Python control plane (xdpctl/abi.py mirrors this file,
 * and tests/unit/test_abi.py checks it against the BTF of the built objects).
 *
 * Sizes and limits are in xdpctl_consts.h, the maps in xdpctl_maps.h.
 *
 * Change a layout here and in xdpctl/abi.py together, never one alone.
 */
#ifndef XDPCTL_ABI_H
#define XDPCTL_ABI_H

#include <linux/types.h>

#include "xdpctl_consts.h"

/* ------------------------------------------------------------------ */
/* Hook program: one per hook, running the stages whose bit is set in  */
/* its per-hook ARRAY xc_stages (one entry, key 0), in enum order.      */
/* ------------------------------------------------------------------ */
enum xc_stage {
	XC_STAGE_COUNTER  = 0,
	XC_STAGE_DROPLIST = 1,
	XC_STAGE_LB       = 2,
};

#define XC_STAGE_BIT(s)   (1U << (s))
#define XC_HOOK_MAGIC     0x78647063 /* "xdpc": a program xdpctl loaded */

struct xc_stages {
	__u32 magic;        /* XC_HOOK_MAGIC, written before the program is attached */
	__u32 owner;        /* the instance (pin directory) that loaded the program */
	__u32 stages;       /* XC_STAGE_BIT(enum xc_stage) of the stages that run */
	__u32 hook;         /* enum xc_hook_kind of the hook: its slot in xc_rule_stats */
};

/* The kind of hook a program runs at (xc_stages.hook; xc_sample.hook). */
enum xc_hook_kind {
	XC_KIND_XDP        = 0,
	XC_KIND_TC_INGRESS = 1,
	XC_KIND_TC_EGRESS  = 2,
};

/* ------------------------------------------------------------------ */
/* Protocol counter (per attachment, PERCPU_ARRAY xc_proto)            */
/* index = l3 * XC_L4_MAX + l4; extra slots after XC_PROTO_EXTRA.      */
/* ------------------------------------------------------------------ */
enum xc_l3 {
	XC_L3_IPV4      = 0,
	XC_L3_IPV6      = 1,
	XC_L3_ARP       = 2,
	XC_L3_OTHER     = 3, /* any other ethertype */
	XC_L3_MALFORMED = 4, /* truncated L2 / L3 header, bad IP version/IHL */
	XC_L3_MAX       = 5,
};

enum xc_l4 {
	XC_L4_NONE      = 0, /* no L4: ARP, other ethertypes, malformed L3 */
	XC_L4_TCP       = 1,
	XC_L4_UDP       = 2,
	XC_L4_ICMP      = 3,
	XC_L4_ICMPV6    = 4,
	XC_L4_SCTP      = 5,
	XC_L4_GRE       = 6,
	XC_L4_OTHER     = 7, /* any other IP protocol */
	XC_L4_FRAGMENT  = 8, /* non-first fragment: no L4 header present */
	XC_L4_MALFORMED = 9, /* L4 header truncated, or ext. header chain too long/truncated */
	XC_L4_MAX       = 10,
};

#define XC_PROTO_EXTRA      (XC_L3_MAX * XC_L4_MAX) /* 50 */
#define XC_PROTO_VLAN1      (XC_PROTO_EXTRA + 0)   /* frames carrying exactly one VLAN tag */
#define XC_PROTO_VLAN2      (XC_PROTO_EXTRA + 1)   /* frames carrying two tags (QinQ) */

struct xc_counter {
	__u64 packets;
	__u64 bytes;
};

/* ------------------------------------------------------------------ */
/* Drop list (maps shared by every hook running the drop list)         */
/* ------------------------------------------------------------------ */
enum xc_dir {
	XC_DIR_SRC = 0,
	XC_DIR_DST = 1,
};

enum xc_action {
	XC_ACT_NONE  = 0, /* empty slot (ARRAY maps) */
	XC_ACT_DENY  = 1,
	XC_ACT_ALLOW = 2,
};

enum xc_policy {
	XC_POLICY_ALLOW = 0, /* default: pass what no rule denies */
	XC_POLICY_DENY  = 1, /* allow-list mode: drop IP traffic no rule allows */
};

/* xc_cfg flags: let the program skip lookups that cannot match */
#define XC_CFG_HAVE_DST   (1U << 0) /* some address rule matches destination */
#define XC_CFG_HAVE_PORT  (1U << 1) /* some L4 (protocol + port) rule exists */
#define XC_CFG_HAVE_V6TRIE (1U << 2) /* xc_v6_trie holds entries */
#define XC_CFG_HAVE_MGMT  (1U << 3) /* xc_mgmt holds management prefixes */
/* The active set's hash bands that hold nothing (never looked up). */
#define XC_CFG_NO_V4L32   (1U << 4)
#define XC_CFG_NO_V4L24   (1U << 5)
#define XC_CFG_NO_V6L128  (1U << 6)
#define XC_CFG_NO_V6L64   (1U << 7)
#define XC_CFG_NO_V6L48   (1U << 8)
#define XC_CFG_NO_V6L32   (1U << 9)
/* The active set's presence bitmap (xc_bits) covers every key of its hash
 * bands and every IPv6 trie entry: a clear bit means no hash band holds the
 * address (and, for IPv6, no trie entry covers it). */
#define XC_CFG_HAVE_BITS  (1U << 10)
/* The active set's IPv4 host table (xc_v4_oa) holds every simple entry of
 * its xc_v4_l32 and flags the buckets of the others. */
#define XC_CFG_HAVE_OA4   (1U << 11)

/*
 * The rule tables exist twice: set A (xc_v4_l16, ...) and set B (the same
 * names with _b). The program looks up only the active set. A change writes
 * the standby set, then names it active together with the new generation
 * in one update of this value, then writes the same change into the other
 * set. synced == generation: the standby set equals the active one.
 *
 * Dead ids: a change that replaces or removes a list may leave the old
 * version's host entries (xc_v4_l32, xc_v6_l128) in the set it makes
 * active, to be deleted after the flip; their rule ids are those of the old
 * version, dead_base .. dead_base+dead_count-1, and the program reads such
 * an entry as absent. dead_count is 0 once they are deleted (always so
 * when synced == generation).
 */
struct xc_config {          /* ARRAY xc_cfg, one entry, key 0 */
	__u32 policy;       /* enum xc_policy */
	__u32 flags;        /* XC_CFG_* */
	__u64 generation;   /* the revision the active set holds */
	__u32 active;       /* 0: set A, 1: set B */
	__u32 dead_count;   /* rule ids dead_base .. dead_base+dead_count-1 are gone */
	__u64 synced;       /* generation the standby set holds too (else stale) */
	__u32 dead_base;
	__u32 pad;
};

/*
 * Value of every address / port table. Prefix rules are stored by
 * controlled prefix expansion: a rule is written under every key of its
 * band's stride that it covers, and each key holds the longest (winning)
 * rule of that band. rule_id indexes xc_rule_stats.
 *
 * When the winner has a deadline, fb_* holds the rule that takes over once
 * it has passed: the longest rule of the same band covering the key whose
 * deadline is later (or none). The kernel uses it until the control plane
 * rewrites the key, so an expired rule never hides a shorter one. fb_action
 * NONE: no fallback (always so in the tries, whose keys are not expanded).
 */
struct xc_rule_val {
	__u32 rule_id;      /* 0 is never a valid rule */
	__u8  action;       /* enum xc_action */
	__u8  plen;         /* prefix length of the original rule */
	__u16 flags;        /* reserved, 0 */
	__u64 expires_ns;   /* CLOCK_MONOTONIC (coarse) deadline, 0 = never; expired = absent */
	__u32 fb_rule_id;
	__u8  fb_action;
	__u8  fb_plen;
	__u16 fb_flags;     /* reserved, 0 */
	__u64 fb_expires_ns;
};

/*
 * IPv4 bands (all hashes keyed by struct xc_key4, address masked to the
 * band's stride, network byte order):
 *   xc_v4_l32  HASH   rules /25../32  (stride /32)
 *   xc_v4_l24  HASH   rules /17../24  (stride /24)
 *   xc_v4_l16  ARRAY  rules  /0../16  (stride /16), index dir*65536 + (addr >> 16)
 * Lookup: l32, then l24, then l16; the first valid entry is the longest match.
 */
struct xc_key4 {
	__u32 dir;          /* enum xc_dir */
	__u32 addr;         /* network byte order, masked to the stride */
};

/*
 * IPv6 bands (hashes keyed by struct xc_key6, masked to the stride):
 *   xc_v6_l128 HASH  rules /128 exactly
 *   xc_v6_l64  HASH  rules /57../64
 *   xc_v6_l48  HASH  rules /41../48
 *   xc_v6_l32  HASH  rules /25../32
 *   xc_v6_trie LPM   every other length (/0../24, /33../40, /49../56, /65../127)
 * Lookup: l128; then t = trie match (length t->plen); then for each band
 * (64, 48, 32) in turn: if t is valid and t->plen > band, t wins; else a
 * valid band entry wins; after the last band, t if valid.
 */
struct xc_key6 {
	__u32 dir;
	__u8  addr[16];
};

struct xc_trie6_key {       /* LPM: prefixlen = 32 + rule plen */
	__u32 prefixlen;
	__u32 dir;          /* network order irrelevant: 0 or 1, matched in full */
	__u8  addr[16];
};

/*
 * L4 rules: protocol + destination port, optionally with a prefix on the
 * source (dir 0) or destination (dir 1) address.
 *   xc_port_trie LPM  prefixlen = 64 + plen (plen counts address bits)
 * A rule without prefix is stored as /0 for family 4 and family 6.
 */
struct xc_port_key {
	__u32 prefixlen;
	__u8  dir;
	__u8  proto;        /* IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP */
	__u16 port;         /* network byte order */
	__u8  family;       /* 4 or 6 */
	__u8  pad[3];
	__u8  addr[16];     /* IPv4 in the first 4 bytes */
};

/*
 * IPv4 host table: ARRAY xc_v4_oa (set A) / xc_v4_oa_b (set B) of struct
 * xc_oa4_bucket, part of its rule set, a copy of the set's xc_v4_l32 that
 * the data path reads without calling into the kernel. Bucket of address a
 * (struct xc_key4.addr, loaded as a u32): (a * XC_OA4_MUL) >> (32 -
 * XC_OA4_BITS), both directions. A slot is a u64: a in bits 0..31, then
 * the state (bits 32..33: empty, live, dead), the direction (bit 34), the
 * action (bits 40..47) and the prefix length (48..55); its rule id beside
 * it. A live slot holds an entry of xc_v4_l32 whose value has no deadline
 * and no fallback, with that value; every other key of the band (a value
 * with a deadline or a fallback, a full bucket) sets the bucket's overflow,
 * and the data path looks those buckets up in xc_v4_l32 too. A slot goes
 * empty -> live (rule id first, then the slot word in one store) -> dead
 * (one store), and is empty again only when the table is rewritten whole
 * while no packet reads it. Bucket XC_OA4_MARK: slot 0 holds the revision
 * the table covers; XC_CFG_HAVE_OA4 says the active set's table may be
 * trusted.
 */
#define XC_OA4_MUL        0x9E3779B1
#define XC_OA4_EMPTY      0
#define XC_OA4_LIVE       1
#define XC_OA4_DEAD       2
#define XC_OA4_KEY_MASK   0x7FFFFFFFF

struct xc_oa4_bucket {
	__u64 slot[4];      /* XC_OA4_SLOTS */
	__u32 rule_id[4];
	__u32 overflow;     /* nonzero: keys of this bucket are in xc_v4_l32 only */
	__u32 pad[3];
};

/*
 * Management prefixes: LPM xc_mgmt, keyed like xc_v6_trie with an IPv4
 * prefix as its v4-mapped IPv6 prefix (::ffff:a.b.c.d, plen + 96). A
 * packet whose source (or, with XC_CFG_HAVE_DST, destination) is inside a
 * live management prefix passes, whatever a deny or the policy says.
 */

/*
 * Presence bitmap: ARRAY xc_bits (set A) / xc_bits_b (set B) of u64 words,
 * part of its rule set. Bit b is word b / 64, bit b % 64. A key of a hash
 * band sets the bit of its address:
 *   IPv4 (xc_v4_l32, xc_v4_l24):  dir << 24 | addr >> 8 (host order)
 *   IPv6 (xc_v6_l128 .. l32):     XC_BITS_V4_BITS + (dir << 24 |
 *                                 (top 32 bits >> 5) & 0xffffff)
 * (IPv6: one bit per /27 of address space, its top 3 bits ignored: every
 * global unicast address is in 2000::/3.) An entry of xc_v6_trie sets the
 * bits of every /27 its prefix covers (all of them below /4), so an IPv6
 * address whose bit is clear matches neither a band nor the trie.
 * A bit may be set with no key behind it (a deleted rule); it is never
 * clear with one. Word XC_BITS_MARK holds the revision the bits cover (0:
 * none); XC_CFG_HAVE_BITS says the active set's bitmap may be trusted.
 *
 * Clock cache: per-hook xc_clock, one struct xc_clock shared by the CPUs:
 * the coarse clock read at the last jiffy a packet saw, so a packet reads
 * the clock only on the first hit of a tick (droplist.h, xc_now).
 */
struct xc_clock {
	__u64 jiffies;
	__u64 now_ns;       /* bpf_ktime_get_coarse_ns() when jiffies was seen */
};

/*
 * Per-rule hit counters: ARRAY xc_rule_stats indexed by rule_id, atomic adds.
 * Each hook kind counts in its own slot (hits[2 * xc_stages.hook]), so one
 * lookup and two adds per hit, as with one slot; the control plane sums the
 * slots for a rule's total.
 */
struct xc_rule_stats {
	__u64 hits[2 * XC_RULE_HOOKS]; /* packets, bytes of each enum xc_hook_kind in turn */
	__u64 last_hit_ns;  /* CLOCK_MONOTONIC (coarse) of the last hit on any hook, 0 = never */
};

/* Per-attachment drop list verdict counters: PERCPU_ARRAY xc_dl_cnt. */
enum xc_dl_reason {
	XC_DL_PASS_NOMATCH = 0, /* no rule matched, policy allow */
	XC_DL_PASS_ALLOW   = 1, /* an allow rule matched */
	XC_DL_PASS_ALWAYS  = 2, /* deny policy, but traffic that always passes */
	XC_DL_DROP_SRC     = 3, /* deny rule on source address */
	XC_DL_DROP_DST     = 4, /* deny rule on destination address */
	XC_DL_DROP_PORT    = 5, /* deny L4 rule */
	XC_DL_DROP_POLICY  = 6, /* deny policy, nothing allowed it */
	XC_DL_PASS_MALFORMED = 7, /* malformed IP, policy allow: left to the stack */
	XC_DL_DROP_MALFORMED = 8, /* malformed IP, policy deny */
	XC_DL_MAX          = XC_DL_SLOTS,
};

/* ------------------------------------------------------------------ */
/* Load balancer (docs/lb.md): chain slot XC_STAGE_LB                  */
/* ------------------------------------------------------------------ */

/*
 * Virtual service: HASH xc_lb_vips (no prealloc: a replaced value is freed
 * after an RCU grace period, so a packet that read the old one reads it
 * whole). Port 0: every port of the protocol, and the only key non-first
 * fragments are looked up with.
 */
struct xc_lb_vip_key {
	__u8  addr[16];     /* network byte order; IPv4 in the first 4 bytes, rest 0 */
	__u16 port;         /* network byte order; 0 = every port */
	__u8  proto;        /* IPPROTO_TCP / IPPROTO_UDP */
	__u8  family;       /* 4 or 6 */
};

#define XC_LB_VIP_HASH_L3 (1U << 0) /* hash and track flows on addresses + protocol only */

/* The VIP's Maglev table is xc_lb_ring[ring_base .. ring_base + ring_size). */
struct xc_lb_vip {
	__u32 ring_base;
	__u32 ring_size;    /* a prime; 0: no backend */
	__u32 vip_id;       /* index of xc_lb_vip_cnt */
	__u32 flags;        /* XC_LB_VIP_* */
};

enum xc_lb_state {
	XC_LB_BE_DOWN     = 0, /* gets nothing, established flows move (an unset slot is down) */
	XC_LB_BE_ACTIVE   = 1, /* in the ring, keeps its flows */
	XC_LB_BE_DRAINING = 2, /* out of the ring, keeps its established flows */
};

#define XC_LB_BE_HAVE_MAC (1U << 0) /* mac is known; without it the backend gets no flows */

/* ARRAY xc_lb_backends, indexed by backend id (id 0 is never a backend). */
struct xc_lb_backend {
	__u8  addr[16];     /* network byte order; IPv4 in the first 4 bytes */
	__u8  mac[6];
	__u8  family;       /* 4 or 6 */
	__u8  state;        /* enum xc_lb_state */
	__u32 flags;        /* XC_LB_BE_* */
	__u32 vip_id;       /* its VIP: a conn entry naming another VIP is not used */
};

/* LRU_HASH xc_lb_conn: client -> VIP 5-tuple (ports 0 for XC_LB_VIP_HASH_L3). */
struct xc_lb_conn_key {
	__u8  src[16];      /* network byte order; IPv4 in the first 4 bytes */
	__u8  dst[16];
	__u16 sport;        /* network byte order */
	__u16 dport;        /* network byte order */
	__u8  proto;
	__u8  family;       /* 4 or 6 */
	__u8  pad[2];
};

struct xc_lb_conn {
	__u32 backend;      /* backend id */
	__u32 vip_id;       /* lets the control plane flush a VIP's flows */
};

/* PERCPU_ARRAY xc_lb_vip_cnt (by vip_id) and xc_lb_be_cnt (by backend id). */
struct xc_lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;    /* ring decisions that created or replaced a conn entry */
};

#define XC_LB_HOOK_ON (1U << 0) /* balance on this hook (xdp, tc ingress) */

/* Per-hook ARRAY xc_lb_hook, one entry: the interface's own MAC. */
struct xc_lb_hook {
	__u8  mac[6];
	__u16 flags;        /* XC_LB_HOOK_* */
};

/* Per-hook PERCPU_ARRAY xc_lb_cnt: what the stage did with each packet. */
enum xc_lb_reason {
	XC_LB_FWD_CONN      = 0, /* established flow, backend from xc_lb_conn */
	XC_LB_FWD_NEW       = 1, /* new flow (or SYN), backend from the ring */
	XC_LB_FWD_ICMP      = 2, /* ICMP too-big for a VIP flow, to the flow's backend */
	XC_LB_PASS_OFF      = 3, /* hook not enabled */
	XC_LB_PASS_NOTIP    = 4, /* not IPv4/IPv6, or malformed */
	XC_LB_PASS_NOVIP    = 5, /* IP traffic for no VIP */
	XC_LB_PASS_FRAGMENT = 6, /* non-first fragment, no port-0 VIP with XC_LB_VIP_HASH_L3 */
	XC_LB_PASS_NOBACKEND = 7, /* empty table, or its backend is not usable */
	XC_LB_PASS_RINGMISS = 8, /* table region outside xc_lb_ring */
	XC_LB_MAX           = XC_LB_SLOTS,
};

/* ------------------------------------------------------------------ */
/* Packet samples (sample.h): off unless a listener wrote its pid into  */
/* the hook's xc_smp_cfg; records go to the hook's ring buffer xc_smp_rb. */
/* ------------------------------------------------------------------ */
struct xc_sample_cfg {
	__u32 pid;      /* the listener; 0: nobody listens, the stage is off */
	__u32 rate;     /* sample 1 in rate qualifying packets (0 and 1: each) */
	__u32 cap;      /* at most this many samples per second on each CPU */
	__u32 reasons;  /* bit (1 << enum xc_dl_reason) of each reason that qualifies */
	__u32 hook;     /* enum xc_hook_kind of this hook (a TC program serves both) */
	__u32 pad;      /* 0 */
};

struct xc_sample_budget {
	__u64 second;   /* the second (bpf_ktime_get_ns() / 1e9) being counted */
	__u32 taken;    /* samples this CPU sent in that second */
	__u32 seen;     /* qualifying packets this CPU saw (1 in rate) */
};

struct xc_sample {
	__u64 ts_ns;    /* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 len;      /* the frame's length (as counted) */
	__u32 rule_id;  /* the rule that decided, 0: none (policy) */
	__u16 cap_len;  /* bytes of the frame in data */
	__u8  hook;     /* enum xc_hook_kind */
	__u8  verdict;  /* 0 pass, 1 drop */
	__u8  reason;   /* enum xc_dl_reason */
	__u8  pad[7];
	__u8  data[128];   /* XC_SAMPLE_BYTES */
};

#endif /* XDPCTL_ABI_H */
