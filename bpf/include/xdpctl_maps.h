/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl maps: every map definition of every object (docs/internals.md,
 * "Maps: per hook vs shared"; xdpctl/abi.py MAP_SPECS mirrors them). Key and
 * value layouts are in xdpctl_abi.h, sizes in xdpctl_consts.h.
 *
 * libbpf creates every map an object defines, used or not, so an object
 * must define only the maps its program uses. The maps come in groups; a
 * stage header defines the macro of its group and includes this file again:
 *
 *   XC_MAPS_HOOK      xc_stages (per hook; only the hook program)
 *   XC_MAPS_PKT       xc_pkt (per hook; programs that parse)
 *   XC_MAPS_COUNTER   xc_proto
 *   XC_MAPS_DROPLIST  xc_cfg, the address, port and management tables and
 *                     the presence bitmap (sets A and B), xc_rule_stats;
 *                     per hook xc_dl_cnt, xc_clock
 *   XC_MAPS_LB        xc_lb_vips, xc_lb_ring, xc_lb_backends, xc_lb_conn,
 *                     xc_lb_vip_cnt, xc_lb_be_cnt; per hook xc_lb_hook,
 *                     xc_lb_cnt
 *   XC_MAPS_SAMPLE    per hook xc_smp_cfg, xc_smp_budget, xc_smp_rb
 *
 * Each group has a guard of its own, so including this file more than once
 * defines every map once.
 *
 * xc_stages, xc_cfg, xc_smp_cfg and xc_clock, the one-entry ARRAYs the
 * data path reads on every packet (or every hit), are global variables (XC_GLOBAL), each alone in a
 * data section named ".data.<map name>". libbpf makes such a section an
 * ARRAY of one entry (key 0) whose value is the variable, mmapable: the
 * control plane pins, reads and writes it like the other maps, and the
 * program reads a field with one load from a constant address, where a map
 * lookup stores the key on the stack, reloads it and checks its bound.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xdpctl_consts.h"
#include "xdpctl_abi.h"
#include "xdpctl_btf.h"

#ifndef XC_GLOBAL
/* A one-entry ARRAY as a global variable in section ".data.<name>". */
#define XC_GLOBAL(type, name) type name SEC(".data." #name)
/* A field of such a variable, read once (the control plane may write it
 * while the program runs, so the compiler must not read it twice). */
#define XC_READ(x) (*(volatile typeof(x) *)&(x))
/* A field of such a variable, stored once (the control plane or another
 * CPU may read it meanwhile). */
#define XC_WRITE(x, v) (*(volatile typeof(x) *)&(x) = (v))
#endif

/* ---- hook program (per hook) ----------------------------------------- */
#if defined(XC_MAPS_HOOK) && !defined(XDPCTL_MAPS_HOOK)
#define XDPCTL_MAPS_HOOK

/* Which stages run, and the mark that says xdpctl loaded the program. */
XC_GLOBAL(struct xc_stages, xc_stages);

#endif /* XDPCTL_MAPS_HOOK */

/* ---- parsed packet (per hook) ----------------------------------------- */
#if defined(XC_MAPS_PKT) && !defined(XDPCTL_MAPS_PKT)
#define XDPCTL_MAPS_PKT

/* The packet being classified, on this CPU (stage.h, xc_pkt_get). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_PKT_ENTRIES);
	__type(key, __u32);
	__type(value, struct xc_pkt);
} xc_pkt SEC(".maps");

#endif /* XDPCTL_MAPS_PKT */

/* ---- protocol counter (per hook) -------------------------------------- */
#if defined(XC_MAPS_COUNTER) && !defined(XDPCTL_MAPS_COUNTER)
#define XDPCTL_MAPS_COUNTER

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_PROTO_SLOTS);
	__type(key, __u32);
	__type(value, struct xc_counter);
} xc_proto SEC(".maps");

#endif /* XDPCTL_MAPS_COUNTER */

/* ---- drop list (shared, pinned under <pin>/maps/; xc_dl_cnt per hook) - */
#if defined(XC_MAPS_DROPLIST) && !defined(XDPCTL_MAPS_DROPLIST)
#define XDPCTL_MAPS_DROPLIST

XC_GLOBAL(struct xc_config, xc_cfg);

/* The rule tables, defined twice: set A (no suffix) and set B (suffix _b).
 * struct xc_config.active says which set the data path reads. */
#define XC_RULE_TABLES(sfx) \
struct { \
	__uint(type, BPF_MAP_TYPE_ARRAY); \
	__uint(max_entries, XC_V4_L16_ENTRIES); \
	__type(key, __u32); \
	__type(value, struct xc_rule_val); \
} xc_v4_l16##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_HASH); \
	__uint(max_entries, XC_V4_L24_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_key4); \
	__type(value, struct xc_rule_val); \
} xc_v4_l24##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_HASH); \
	__uint(max_entries, XC_V4_L32_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_key4); \
	__type(value, struct xc_rule_val); \
} xc_v4_l32##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_HASH); \
	__uint(max_entries, XC_V6_L128_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_key6); \
	__type(value, struct xc_rule_val); \
} xc_v6_l128##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_HASH); \
	__uint(max_entries, XC_V6_L64_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_key6); \
	__type(value, struct xc_rule_val); \
} xc_v6_l64##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_HASH); \
	__uint(max_entries, XC_V6_L48_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_key6); \
	__type(value, struct xc_rule_val); \
} xc_v6_l48##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_HASH); \
	__uint(max_entries, XC_V6_L32_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_key6); \
	__type(value, struct xc_rule_val); \
} xc_v6_l32##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_LPM_TRIE); \
	__uint(max_entries, XC_V6_TRIE_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_trie6_key); \
	__type(value, struct xc_rule_val); \
} xc_v6_trie##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_LPM_TRIE); \
	__uint(max_entries, XC_PORT_TRIE_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_port_key); \
	__type(value, struct xc_rule_val); \
} xc_port_trie##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_LPM_TRIE); \
	__uint(max_entries, XC_MGMT_ENTRIES); \
	__uint(map_flags, BPF_F_NO_PREALLOC); \
	__type(key, struct xc_trie6_key); \
	__type(value, struct xc_rule_val); \
} xc_mgmt##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_ARRAY); \
	__uint(max_entries, XC_BITS_ENTRIES); \
	__uint(map_flags, BPF_F_MMAPABLE); \
	__type(key, __u32); \
	__type(value, __u64); \
} xc_bits##sfx SEC(".maps"); \
struct { \
	__uint(type, BPF_MAP_TYPE_ARRAY); \
	__uint(max_entries, XC_V4_OA_ENTRIES); \
	__uint(map_flags, BPF_F_MMAPABLE); \
	__type(key, __u32); \
	__type(value, struct xc_oa4_bucket); \
} xc_v4_oa##sfx SEC(".maps");

XC_RULE_TABLES()
XC_RULE_TABLES(_b)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XC_RULE_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct xc_rule_stats);
} xc_rule_stats SEC(".maps");

/* per hook */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_DL_SLOTS);
	__type(key, __u32);
	__type(value, struct xc_counter);
} xc_dl_cnt SEC(".maps");

XC_GLOBAL(struct xc_clock, xc_clock);

#endif /* XDPCTL_MAPS_DROPLIST */

/* ---- load balancer (shared; xc_lb_hook and xc_lb_cnt per hook) ------- */
#if defined(XC_MAPS_LB) && !defined(XDPCTL_MAPS_LB)
#define XDPCTL_MAPS_LB

/* No prealloc: a replaced VIP value is freed only after an RCU grace
 * period, never reused under a running program (the atomic table switch). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XC_LB_VIPS_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xc_lb_vip_key);
	__type(value, struct xc_lb_vip);
} xc_lb_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XC_LB_RING_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} xc_lb_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XC_LB_BACKENDS_ENTRIES);
	__type(key, __u32);
	__type(value, struct xc_lb_backend);
} xc_lb_backends SEC(".maps");

/* One LRU shared by all CPUs (docs/lb.md, "Connection table"). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XC_LB_CONN_ENTRIES);
	__type(key, struct xc_lb_conn_key);
	__type(value, struct xc_lb_conn);
} xc_lb_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_LB_VIP_CNT_ENTRIES);
	__type(key, __u32);
	__type(value, struct xc_lb_stats);
} xc_lb_vip_cnt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_LB_BE_CNT_ENTRIES);
	__type(key, __u32);
	__type(value, struct xc_lb_stats);
} xc_lb_be_cnt SEC(".maps");

/* per hook */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XC_LB_HOOK_ENTRIES);
	__type(key, __u32);
	__type(value, struct xc_lb_hook);
} xc_lb_hook SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_LB_SLOTS);
	__type(key, __u32);
	__type(value, struct xc_counter);
} xc_lb_cnt SEC(".maps");

#endif /* XDPCTL_MAPS_LB */

/* ---- packet samples (per hook) ---------------------------------------- */
#if defined(XC_MAPS_SAMPLE) && !defined(XDPCTL_MAPS_SAMPLE)
#define XDPCTL_MAPS_SAMPLE

XC_GLOBAL(struct xc_sample_cfg, xc_smp_cfg);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XC_SMP_BUDGET_ENTRIES);
	__type(key, __u32);
	__type(value, struct xc_sample_budget);
} xc_smp_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XC_SMP_RB_ENTRIES);
} xc_smp_rb SEC(".maps");

#endif /* XDPCTL_MAPS_SAMPLE */
