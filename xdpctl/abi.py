"""The map ABI on the Python side: every key/value layout, enum and constant
of bpf/include/xdpctl_abi.h, the sizes of bpf/include/xdpctl_consts.h that
Python uses, and the table of maps (bpf/include/xdpctl_maps.h,
docs/internals.md).

This is the one place Python defines layouts. Change a layout here and in
xdpctl_abi.h together; tests/unit/test_abi.py checks this module against the
header text and against the BTF of the built objects in xdpctl/bpf/*.o.

Maps hold host-endian integers, except the fields the header marks as
network byte order (addresses and the L4 port), which are byte strings or
big-endian here.
"""
from __future__ import annotations

import ctypes
import enum
import struct
from typing import NamedTuple

# ---------------------------------------------------------------------------
# Hook program: the stages that run, by bit, in the per-hook map xc_stages
# ---------------------------------------------------------------------------
STAGES_ENTRIES = 1
PKT_BYTES = 48  # struct xc_pkt (parse.h): the parser's output, only the programs read it
HOOK_MAGIC = 0x78647063  # "xdpc": xc_stages.magic of a program xdpctl loaded


class Stage(enum.IntEnum):
    COUNTER = 0
    DROPLIST = 1
    LB = 2


def stage_bit(stage: int) -> int:
    """XC_STAGE_BIT: the bit of a stage in xc_stages.stages."""
    return 1 << int(stage)


# ---------------------------------------------------------------------------
# Protocol counter
# ---------------------------------------------------------------------------
class L3(enum.IntEnum):
    IPV4 = 0
    IPV6 = 1
    ARP = 2
    OTHER = 3
    MALFORMED = 4
    MAX = 5


class L4(enum.IntEnum):
    NONE = 0
    TCP = 1
    UDP = 2
    ICMP = 3
    ICMPV6 = 4
    SCTP = 5
    GRE = 6
    OTHER = 7
    FRAGMENT = 8
    MALFORMED = 9
    MAX = 10


PROTO_EXTRA = L3.MAX * L4.MAX  # 50
PROTO_VLAN1 = PROTO_EXTRA + 0
PROTO_VLAN2 = PROTO_EXTRA + 1
PROTO_SLOTS = 64


def proto_slot(l3: int, l4: int) -> int:
    """Index of the xc_proto slot for an (l3, l4) class."""
    return int(l3) * L4.MAX + int(l4)


# ---------------------------------------------------------------------------
# Drop list
# ---------------------------------------------------------------------------
class Dir(enum.IntEnum):
    SRC = 0
    DST = 1


class Action(enum.IntEnum):
    NONE = 0
    DENY = 1
    ALLOW = 2


class Policy(enum.IntEnum):
    ALLOW = 0
    DENY = 1


class CfgFlag(enum.IntFlag):
    HAVE_DST = 1 << 0
    HAVE_PORT = 1 << 1
    HAVE_V6TRIE = 1 << 2
    HAVE_MGMT = 1 << 3
    NO_V4L32 = 1 << 4      # the active set's hash band holds nothing
    NO_V4L24 = 1 << 5
    NO_V6L128 = 1 << 6
    NO_V6L64 = 1 << 7
    NO_V6L48 = 1 << 8
    NO_V6L32 = 1 << 9
    HAVE_BITS = 1 << 10    # the active set's presence bitmap covers its hash bands
    HAVE_OA4 = 1 << 11     # the active set's IPv4 host table mirrors its xc_v4_l32


# The empty-band flag of each hash band (xc_config.flags).
BAND_EMPTY_FLAG = {
    "xc_v4_l32": CfgFlag.NO_V4L32, "xc_v4_l24": CfgFlag.NO_V4L24,
    "xc_v6_l128": CfgFlag.NO_V6L128, "xc_v6_l64": CfgFlag.NO_V6L64,
    "xc_v6_l48": CfgFlag.NO_V6L48, "xc_v6_l32": CfgFlag.NO_V6L32,
}
SET_FLAGS = CfgFlag(sum(BAND_EMPTY_FLAG.values()) | CfgFlag.HAVE_BITS | CfgFlag.HAVE_OA4)  # derived from a set
TRUST_FLAGS = CfgFlag.HAVE_BITS | CfgFlag.HAVE_OA4  # of SET_FLAGS: the set's derived tables may be trusted

# Presence bitmap (xc_bits, one per rule set): u64 words, then a revision word.
BITS_V4_BITS = 1 << 25
BITS_V6_BITS = 1 << 25
BITS_WORDS = (BITS_V4_BITS + BITS_V6_BITS) // 64
BITS_MARK = BITS_WORDS
BITS_V6_SHIFT = 5

# IPv4 host table (xc_v4_oa, one per rule set: xdpctl_abi.h): buckets of
# OA4_SLOTS slots, then one bucket whose slot 0 is the revision it covers.
OA4_BITS = 19
OA4_BUCKETS = 1 << OA4_BITS
OA4_MARK = OA4_BUCKETS
OA4_SLOTS = 4
OA4_MUL = 0x9E3779B1
OA4_EMPTY, OA4_LIVE, OA4_DEAD = 0, 1, 2  # slot states (bits 32..33 of a slot)
OA4_KEY_MASK = 0x7FFFFFFFF  # of a slot: address, state, direction


class DlReason(enum.IntEnum):
    PASS_NOMATCH = 0
    PASS_ALLOW = 1
    PASS_ALWAYS = 2
    DROP_SRC = 3
    DROP_DST = 4
    DROP_PORT = 5
    DROP_POLICY = 6
    PASS_MALFORMED = 7
    DROP_MALFORMED = 8
    MAX = 16


DL_MAX = int(DlReason.MAX)


# ---------------------------------------------------------------------------
# Load balancer (docs/lb.md)
# ---------------------------------------------------------------------------
class LbState(enum.IntEnum):
    DOWN = 0
    ACTIVE = 1
    DRAINING = 2


class LbReason(enum.IntEnum):
    FWD_CONN = 0
    FWD_NEW = 1
    FWD_ICMP = 2
    PASS_OFF = 3
    PASS_NOTIP = 4
    PASS_NOVIP = 5
    PASS_FRAGMENT = 6
    PASS_NOBACKEND = 7
    PASS_RINGMISS = 8
    MAX = 16


LB_SLOTS = int(LbReason.MAX)
LB_VIP_HASH_L3 = 1 << 0      # xc_lb_vip.flags
LB_BE_HAVE_MAC = 1 << 0      # xc_lb_backend.flags
LB_HOOK_ON = 1 << 0          # xc_lb_hook.flags
LB_RING_DEFAULT = 65537      # Maglev table size unless set (prime)
LB_RING_MAX = 1048573        # largest table size (prime)
LB_HASH_SEED = 0x5BD1E995    # flow hash seed
LB_ICMP_PULL = 128



class HookKind(enum.IntEnum):
    """enum xc_hook_kind: the kind of hook a program runs at (xc_stages.hook:
    its slot in xc_rule_stats; xc_sample.hook)."""
    XDP = 0
    TC_INGRESS = 1
    TC_EGRESS = 2


# Hook kind -> its slot in xc_rule_stats (and xc_stages.hook, xc_sample.hook).
HOOK_KINDS = {"xdp": HookKind.XDP, "tc-ingress": HookKind.TC_INGRESS, "tc-egress": HookKind.TC_EGRESS}
RULE_HOOKS = len(HookKind)   # xc_rule_stats slots

SAMPLE_BYTES = 128           # frame bytes a sample carries at most
SMP_RB_ENTRIES = 262144      # xc_smp_rb: ring buffer bytes

# C enum name -> (Python enum, prefix of the C enumerator names). Used by
# the ABI test to compare this module with the header and the BTF.
C_ENUMS: dict[str, tuple[type[enum.IntEnum], str]] = {
    "xc_stage": (Stage, "XC_STAGE_"),
    "xc_l3": (L3, "XC_L3_"),
    "xc_l4": (L4, "XC_L4_"),
    "xc_dir": (Dir, "XC_DIR_"),
    "xc_action": (Action, "XC_ACT_"),
    "xc_policy": (Policy, "XC_POLICY_"),
    "xc_dl_reason": (DlReason, "XC_DL_"),
    "xc_lb_state": (LbState, "XC_LB_BE_"),
    "xc_lb_reason": (LbReason, "XC_LB_"),
    "xc_hook_kind": (HookKind, "XC_KIND_"),
}

# C #define name (xdpctl_abi.h) -> value.
C_DEFINES: dict[str, int] = {
    "XC_HOOK_MAGIC": HOOK_MAGIC,
    "XC_PROTO_EXTRA": PROTO_EXTRA,
    "XC_PROTO_VLAN1": PROTO_VLAN1,
    "XC_PROTO_VLAN2": PROTO_VLAN2,
    "XC_CFG_HAVE_DST": int(CfgFlag.HAVE_DST),
    "XC_CFG_HAVE_PORT": int(CfgFlag.HAVE_PORT),
    "XC_CFG_HAVE_V6TRIE": int(CfgFlag.HAVE_V6TRIE),
    "XC_CFG_HAVE_MGMT": int(CfgFlag.HAVE_MGMT),
    **{f"XC_CFG_{f.name}": int(f) for f in CfgFlag if f.name.startswith("NO_")},
    "XC_CFG_HAVE_BITS": int(CfgFlag.HAVE_BITS),
    "XC_CFG_HAVE_OA4": int(CfgFlag.HAVE_OA4),
    "XC_OA4_MUL": OA4_MUL,
    "XC_OA4_EMPTY": OA4_EMPTY,
    "XC_OA4_LIVE": OA4_LIVE,
    "XC_OA4_DEAD": OA4_DEAD,
    "XC_OA4_KEY_MASK": OA4_KEY_MASK,
    "XC_LB_VIP_HASH_L3": LB_VIP_HASH_L3,
    "XC_LB_BE_HAVE_MAC": LB_BE_HAVE_MAC,
    "XC_LB_HOOK_ON": LB_HOOK_ON,
}

# ---------------------------------------------------------------------------
# Structures (field names exactly as in the header)
# ---------------------------------------------------------------------------
u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class xc_stages(ctypes.Structure):
    _fields_ = [("magic", u32), ("owner", u32), ("stages", u32), ("hook", u32)]


class xc_counter(ctypes.Structure):
    _fields_ = [("packets", u64), ("bytes", u64)]


class xc_config(ctypes.Structure):
    _fields_ = [("policy", u32), ("flags", u32), ("generation", u64), ("active", u32), ("dead_count", u32),
                ("synced", u64), ("dead_base", u32), ("pad", u32)]


class xc_rule_val(ctypes.Structure):
    _fields_ = [
        ("rule_id", u32),
        ("action", u8),
        ("plen", u8),
        ("flags", u16),
        ("expires_ns", u64),
        ("fb_rule_id", u32),
        ("fb_action", u8),
        ("fb_plen", u8),
        ("fb_flags", u16),
        ("fb_expires_ns", u64),
    ]


class xc_key4(ctypes.Structure):
    _fields_ = [("dir", u32), ("addr", u32)]  # addr: network byte order


class xc_key6(ctypes.Structure):
    _fields_ = [("dir", u32), ("addr", u8 * 16)]


class xc_trie6_key(ctypes.Structure):
    _fields_ = [("prefixlen", u32), ("dir", u32), ("addr", u8 * 16)]


class xc_port_key(ctypes.Structure):
    _fields_ = [
        ("prefixlen", u32),
        ("dir", u8),
        ("proto", u8),
        ("port", u16),  # network byte order
        ("family", u8),
        ("pad", u8 * 3),
        ("addr", u8 * 16),
    ]


class xc_clock(ctypes.Structure):
    _fields_ = [("jiffies", u64), ("now_ns", u64)]


class xc_oa4_bucket(ctypes.Structure):
    _fields_ = [("slot", u64 * OA4_SLOTS), ("rule_id", u32 * OA4_SLOTS), ("overflow", u32), ("pad", u32 * 3)]


class xc_rule_stats(ctypes.Structure):
    _fields_ = [("hits", u64 * (2 * RULE_HOOKS)), ("last_hit_ns", u64)]


class xc_lb_vip_key(ctypes.Structure):
    _fields_ = [("addr", u8 * 16), ("port", u16), ("proto", u8), ("family", u8)]  # port: network order


class xc_lb_vip(ctypes.Structure):
    _fields_ = [("ring_base", u32), ("ring_size", u32), ("vip_id", u32), ("flags", u32)]


class xc_lb_backend(ctypes.Structure):
    _fields_ = [
        ("addr", u8 * 16),
        ("mac", u8 * 6),
        ("family", u8),
        ("state", u8),
        ("flags", u32),
        ("vip_id", u32),
    ]


class xc_lb_conn_key(ctypes.Structure):
    _fields_ = [
        ("src", u8 * 16),
        ("dst", u8 * 16),
        ("sport", u16),  # network byte order
        ("dport", u16),  # network byte order
        ("proto", u8),
        ("family", u8),
        ("pad", u8 * 2),
    ]


class xc_lb_conn(ctypes.Structure):
    _fields_ = [("backend", u32), ("vip_id", u32)]


class xc_lb_stats(ctypes.Structure):
    _fields_ = [("packets", u64), ("bytes", u64), ("new_flows", u64)]


class xc_lb_hook(ctypes.Structure):
    _fields_ = [("mac", u8 * 6), ("flags", u16)]


class xc_sample_cfg(ctypes.Structure):
    _fields_ = [("pid", u32), ("rate", u32), ("cap", u32), ("reasons", u32), ("hook", u32), ("pad", u32)]


class xc_sample_budget(ctypes.Structure):
    _fields_ = [("second", u64), ("taken", u32), ("seen", u32)]


class xc_sample(ctypes.Structure):
    _fields_ = [("ts_ns", u64), ("ifindex", u32), ("len", u32), ("rule_id", u32), ("cap_len", u16),
                ("hook", u8), ("verdict", u8), ("reason", u8), ("pad", u8 * 7), ("data", u8 * SAMPLE_BYTES)]


class no_type(ctypes.Structure):
    """The key and value of a ring buffer: none (size 0)."""
    _fields_: list = []


STRUCTS: dict[str, type[ctypes.Structure]] = {
    cls.__name__: cls
    for cls in (xc_stages, xc_counter, xc_config, xc_rule_val, xc_key4, xc_key6,
                xc_trie6_key, xc_port_key, xc_clock, xc_oa4_bucket, xc_rule_stats,
                xc_lb_vip_key, xc_lb_vip, xc_lb_backend, xc_lb_conn_key,
                xc_lb_conn, xc_lb_stats, xc_lb_hook, xc_sample_cfg, xc_sample_budget, xc_sample)
}

# ---------------------------------------------------------------------------
# Packing: struct formats equal to the ctypes layouts (checked by the tests).
# '=' is host byte order without alignment; padding is spelled out.
# ---------------------------------------------------------------------------
U32 = struct.Struct("=I")
STAGES = struct.Struct("=IIII")                # xc_stages
COUNTER = struct.Struct("=QQ")                 # xc_counter
CONFIG = struct.Struct("=IIQ")                 # head of xc_config: policy, flags, generation
CONFIG_FULL = struct.Struct("=IIQIIQI4x")      # xc_config: the head, active set, dead count, synced, dead base
RULE_VAL = struct.Struct("=IBBHQIBBHQ")        # xc_rule_val (rule, then its same-band fallback)
RULE_HALF = struct.Struct("=IBBHQ")            # one half of xc_rule_val
KEY4 = struct.Struct("=I4s")                   # xc_key4 (addr as 4 bytes, big-endian)
KEY6 = struct.Struct("=I16s")                  # xc_key6
TRIE6_KEY = struct.Struct("=II16s")            # xc_trie6_key
PORT_KEY = struct.Struct("=IBB2sB3x16s")       # xc_port_key (port as 2 bytes, big-endian)
RULE_STATS = struct.Struct("=QQQQQQQ")         # xc_rule_stats: (packets, bytes) per hook kind, last hit
CLOCK = struct.Struct("=QQ")                   # xc_clock
LB_VIP_KEY = struct.Struct("=16s2sBB")         # xc_lb_vip_key (port as 2 bytes, big-endian)
LB_VIP = struct.Struct("=IIII")                # xc_lb_vip
LB_BACKEND = struct.Struct("=16s6sBBII")       # xc_lb_backend
LB_CONN_KEY = struct.Struct("=16s16s2s2sBB2x")  # xc_lb_conn_key (ports big-endian)
LB_CONN = struct.Struct("=II")                 # xc_lb_conn
LB_STATS = struct.Struct("=QQQ")               # xc_lb_stats
LB_HOOK = struct.Struct("=6sH")                # xc_lb_hook
SAMPLE_CFG = struct.Struct("=IIIII4x")         # xc_sample_cfg
SAMPLE_BUDGET = struct.Struct("=QII")          # xc_sample_budget
SAMPLE = struct.Struct("=QIIIHBBB7x128s")      # xc_sample

PACKERS: dict[str, struct.Struct] = {
    "xc_stages": STAGES,
    "xc_counter": COUNTER,
    "xc_config": CONFIG_FULL,
    "xc_rule_val": RULE_VAL,
    "xc_key4": KEY4,
    "xc_key6": KEY6,
    "xc_trie6_key": TRIE6_KEY,
    "xc_port_key": PORT_KEY,
    "xc_rule_stats": RULE_STATS,
    "xc_clock": CLOCK,
    "xc_oa4_bucket": struct.Struct("=4Q4II12x"),
    "xc_lb_vip_key": LB_VIP_KEY,
    "xc_lb_vip": LB_VIP,
    "xc_lb_backend": LB_BACKEND,
    "xc_lb_conn_key": LB_CONN_KEY,
    "xc_lb_conn": LB_CONN,
    "xc_lb_stats": LB_STATS,
    "xc_lb_hook": LB_HOOK,
    "xc_sample_cfg": SAMPLE_CFG,
    "xc_sample_budget": SAMPLE_BUDGET,
    "xc_sample": SAMPLE,
}

# LPM prefixlen offsets: bits of the key in front of the address.
TRIE6_PREFIX_BASE = 32   # xc_trie6_key.dir
MGMT_V4_PLEN = 96        # xc_mgmt: an IPv4 prefix is ::ffff:0:0/96 + plen
PORT_PREFIX_BASE = 64    # dir, proto, port, family, pad

# enum xc_consts (xdpctl_consts.h) member -> the value of this module that
# copies it. Map sizes are compared map by map with MAP_SPECS instead.
C_CONSTS: dict[str, int] = {
    "XC_PROTO_SLOTS": PROTO_SLOTS,
    "XC_DL_SLOTS": DL_MAX,
    "XC_TRIE6_PLEN_BASE": TRIE6_PREFIX_BASE,
    "XC_PORT_PLEN_BASE": PORT_PREFIX_BASE,
    "XC_MGMT_V4_PLEN": MGMT_V4_PLEN,
    "XC_LB_SLOTS": LB_SLOTS,
    "XC_LB_RING_DEFAULT": LB_RING_DEFAULT,
    "XC_LB_RING_MAX": LB_RING_MAX,
    "XC_LB_HASH_SEED": LB_HASH_SEED,
    "XC_LB_ICMP_PULL": LB_ICMP_PULL,
    "XC_SAMPLE_BYTES": SAMPLE_BYTES,
    "XC_RULE_HOOKS": RULE_HOOKS,
    "XC_BITS_V4_BITS": BITS_V4_BITS,
    "XC_BITS_V6_BITS": BITS_V6_BITS,
    "XC_BITS_WORDS": BITS_WORDS,
    "XC_BITS_MARK": BITS_MARK,
    "XC_BITS_V6_SHIFT": BITS_V6_SHIFT,
    "XC_OA4_BITS": OA4_BITS,
    "XC_OA4_BUCKETS": OA4_BUCKETS,
    "XC_OA4_MARK": OA4_MARK,
    "XC_OA4_SLOTS": OA4_SLOTS,
}


def pack_key4(dir: int, addr: int) -> bytes:
    return KEY4.pack(dir, addr.to_bytes(4, "big"))


def pack_key6(dir: int, addr: int) -> bytes:
    return KEY6.pack(dir, addr.to_bytes(16, "big"))


def pack_trie6_key(dir: int, addr: int, plen: int) -> bytes:
    return TRIE6_KEY.pack(TRIE6_PREFIX_BASE + plen, dir, addr.to_bytes(16, "big"))


def pack_port_key(dir: int, proto: int, port: int, family: int, addr: int, plen: int) -> bytes:
    """xc_port_key; an IPv4 address fills the first 4 bytes of addr."""
    if family == 4:
        a = addr.to_bytes(4, "big") + bytes(12)
    else:
        a = addr.to_bytes(16, "big")
    return PORT_KEY.pack(PORT_PREFIX_BASE + plen, dir, proto, port.to_bytes(2, "big"), family, a)


def pack_rule_val(rule_id: int, action: int, plen: int, expires_ns: int = 0,
                  fb: tuple[int, int, int, int] | None = None) -> bytes:
    """xc_rule_val; fb = (rule_id, action, plen, expires_ns) of the fallback."""
    f = fb or (0, 0, 0, 0)
    return RULE_VAL.pack(rule_id, action, plen, 0, expires_ns, f[0], f[1], f[2], 0, f[3])


def pack_stages(owner: int, stages: int, hook: int) -> bytes:
    """xc_stages of a hook program xdpctl loaded: magic, owner, stage bits,
    hook kind (enum xc_hook_kind)."""
    return STAGES.pack(HOOK_MAGIC, owner, stages, hook)


def pack_config(policy: int, flags: int, generation: int, active: int = 0, synced: int | None = None,
                dead_base: int = 0, dead_count: int = 0) -> bytes:
    """xc_config; synced defaults to generation (both sets hold it)."""
    return CONFIG_FULL.pack(policy, flags, generation, active, dead_count,
                            generation if synced is None else synced, dead_base)


class Config(NamedTuple):
    policy: int
    flags: int
    generation: int
    active: int = 0
    synced: int = 0
    dead_base: int = 0   # rule ids dead_base .. +dead_count-1: entries the active set holds that read as absent
    dead_count: int = 0

    def pack(self) -> bytes:
        return pack_config(*self)


def unpack_config(b: bytes) -> Config:
    policy, flags, generation, active, dead_count, synced, dead_base = CONFIG_FULL.unpack(b[:CONFIG_FULL.size])
    return Config(policy, flags, generation, active, synced, dead_base, dead_count)


def pack_mgmt_key(dir: int, family: int, addr: int, plen: int) -> bytes:
    """xc_mgmt key: xc_trie6_key with an IPv4 prefix v4-mapped."""
    if family == 4:
        return pack_trie6_key(dir, 0xFFFF00000000 | addr, MGMT_V4_PLEN + plen)
    return pack_trie6_key(dir, addr, plen)


class RuleVal(NamedTuple):
    rule_id: int
    action: int
    plen: int
    flags: int
    expires_ns: int
    fb_rule_id: int = 0
    fb_action: int = 0
    fb_plen: int = 0
    fb_flags: int = 0
    fb_expires_ns: int = 0


def unpack_rule_val(b: bytes) -> RuleVal:
    return RuleVal(*RULE_VAL.unpack(b[:RULE_VAL.size]))


class RuleHits(NamedTuple):
    """One xc_rule_stats value: the total over the hook kinds, and each kind's
    (packets, bytes) by HookKind."""
    packets: int
    bytes: int
    last_hit_ns: int
    hooks: tuple[tuple[int, int], ...]


NO_HITS = RuleHits(0, 0, 0, ((0, 0),) * RULE_HOOKS)


def unpack_rule_stats(b: bytes) -> RuleHits:
    v = RULE_STATS.unpack(b[:RULE_STATS.size])
    hooks = tuple(zip(v[0:2 * RULE_HOOKS:2], v[1:2 * RULE_HOOKS:2]))
    return RuleHits(sum(p for p, _ in hooks), sum(b for _, b in hooks), v[2 * RULE_HOOKS], hooks)


def pack_rule_stats(hooks: tuple[tuple[int, int], ...], last_hit_ns: int = 0) -> bytes:
    """xc_rule_stats from (packets, bytes) per hook kind."""
    return RULE_STATS.pack(*(n for pair in hooks for n in pair), last_hit_ns)


# ---------------------------------------------------------------------------
# Maps (docs/internals.md, "Maps: per hook vs shared")
# ---------------------------------------------------------------------------
class MapType(enum.IntEnum):
    """The BPF_MAP_TYPE_* values used by xdpctl (linux/bpf.h)."""
    HASH = 1
    ARRAY = 2
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LPM_TRIE = 11
    RINGBUF = 27


BPF_F_NO_PREALLOC = 1
BPF_F_MMAPABLE = 1 << 10  # an ARRAY the writer may mmap (the presence bitmaps)


class MapSpec(NamedTuple):
    name: str
    scope: str                 # 'hook' (one per hook) or 'shared' (one per pin root)
    map_type: MapType
    key: type                  # ctypes type of the key
    key_size: int
    value: type                # ctypes type of the value (prog fd: u32)
    value_size: int
    max_entries: int           # default
    flags: int                 # map_flags


def _spec(name, scope, map_type, key, value, entries, flags=0) -> MapSpec:
    return MapSpec(name, scope, map_type, key, ctypes.sizeof(key), value,
                   ctypes.sizeof(value), entries, flags)


MAP_SPECS: dict[str, MapSpec] = {s.name: s for s in (
    # per hook
    _spec("xc_stages", "hook", MapType.ARRAY, u32, xc_stages, STAGES_ENTRIES, BPF_F_MMAPABLE),
    _spec("xc_pkt", "hook", MapType.PERCPU_ARRAY, u32, u8 * PKT_BYTES, 1),
    _spec("xc_proto", "hook", MapType.PERCPU_ARRAY, u32, xc_counter, PROTO_SLOTS),
    _spec("xc_dl_cnt", "hook", MapType.PERCPU_ARRAY, u32, xc_counter, DL_MAX),
    _spec("xc_clock", "hook", MapType.ARRAY, u32, xc_clock, 1, BPF_F_MMAPABLE),
    # shared
    _spec("xc_cfg", "shared", MapType.ARRAY, u32, xc_config, 1, BPF_F_MMAPABLE),
    _spec("xc_v4_l16", "shared", MapType.ARRAY, u32, xc_rule_val, 2 * 65536),
    _spec("xc_v4_l24", "shared", MapType.HASH, xc_key4, xc_rule_val, 1048576, BPF_F_NO_PREALLOC),
    _spec("xc_v4_l32", "shared", MapType.HASH, xc_key4, xc_rule_val, 2097152, BPF_F_NO_PREALLOC),
    _spec("xc_v6_l128", "shared", MapType.HASH, xc_key6, xc_rule_val, 1048576, BPF_F_NO_PREALLOC),
    _spec("xc_v6_l64", "shared", MapType.HASH, xc_key6, xc_rule_val, 1048576, BPF_F_NO_PREALLOC),
    _spec("xc_v6_l48", "shared", MapType.HASH, xc_key6, xc_rule_val, 262144, BPF_F_NO_PREALLOC),
    _spec("xc_v6_l32", "shared", MapType.HASH, xc_key6, xc_rule_val, 262144, BPF_F_NO_PREALLOC),
    _spec("xc_v6_trie", "shared", MapType.LPM_TRIE, xc_trie6_key, xc_rule_val, 262144, BPF_F_NO_PREALLOC),
    _spec("xc_port_trie", "shared", MapType.LPM_TRIE, xc_port_key, xc_rule_val, 65536, BPF_F_NO_PREALLOC),
    _spec("xc_mgmt", "shared", MapType.LPM_TRIE, xc_trie6_key, xc_rule_val, 4096, BPF_F_NO_PREALLOC),
    _spec("xc_bits", "shared", MapType.ARRAY, u32, u64, BITS_WORDS + 1, BPF_F_MMAPABLE),
    _spec("xc_v4_oa", "shared", MapType.ARRAY, u32, xc_oa4_bucket, OA4_BUCKETS + 1, BPF_F_MMAPABLE),
    _spec("xc_rule_stats", "shared", MapType.ARRAY, u32, xc_rule_stats, 2097152),
    # load balancer: per hook
    _spec("xc_lb_hook", "hook", MapType.ARRAY, u32, xc_lb_hook, 1),
    _spec("xc_lb_cnt", "hook", MapType.PERCPU_ARRAY, u32, xc_counter, LB_SLOTS),
    # load balancer: shared
    _spec("xc_lb_vips", "shared", MapType.HASH, xc_lb_vip_key, xc_lb_vip, 1024, BPF_F_NO_PREALLOC),
    _spec("xc_lb_vip_cnt", "shared", MapType.PERCPU_ARRAY, u32, xc_lb_stats, 1024),
    _spec("xc_lb_backends", "shared", MapType.ARRAY, u32, xc_lb_backend, 4096),
    _spec("xc_lb_be_cnt", "shared", MapType.PERCPU_ARRAY, u32, xc_lb_stats, 4096),
    _spec("xc_lb_ring", "shared", MapType.ARRAY, u32, u32, 2097152),
    _spec("xc_lb_conn", "shared", MapType.LRU_HASH, xc_lb_conn_key, xc_lb_conn, 131072),
    # packet samples: per hook
    _spec("xc_smp_cfg", "hook", MapType.ARRAY, u32, xc_sample_cfg, 1, BPF_F_MMAPABLE),
    _spec("xc_smp_budget", "hook", MapType.PERCPU_ARRAY, u32, xc_sample_budget, 1),
    _spec("xc_smp_rb", "hook", MapType.RINGBUF, no_type, no_type, SMP_RB_ENTRIES),
)}

# The maps the drop-list compiler fills (xdpctl.core.dlcompile): set A of
# the rule tables. Set B has the same maps under STANDBY_SUFFIX.
RULE_MAPS = ("xc_v4_l16", "xc_v4_l24", "xc_v4_l32", "xc_v6_l128", "xc_v6_l64",
             "xc_v6_l48", "xc_v6_l32", "xc_v6_trie", "xc_port_trie", "xc_mgmt")
BITS_MAP = "xc_bits"                  # the presence bitmap of a set
OA4_MAP = "xc_v4_oa"                  # the IPv4 host table of a set (a copy of its xc_v4_l32)
SET_TABLES = RULE_MAPS + (BITS_MAP, OA4_MAP)  # every map that exists once per set
STANDBY_SUFFIX = "_b"
MAP_SPECS.update({n + STANDBY_SUFFIX: MAP_SPECS[n]._replace(name=n + STANDBY_SUFFIX) for n in SET_TABLES})


def set_map(name: str, rule_set: int) -> str:
    """The name of rule map ``name`` (a SET_TABLES name) in set 0 (A) or 1 (B)."""
    return name + STANDBY_SUFFIX if rule_set else name


def with_sets(by_name: dict[str, int]) -> dict[str, int]:
    """A per-map setting for a loader (sizes, flags): a rule map's applies
    to both sets."""
    out = dict(by_name)
    out.update({n + STANDBY_SUFFIX: v for n, v in by_name.items() if n in RULE_MAPS})
    return out


# The rule maps that may be preallocated (settings.prealloc): the hash bands.
# An LPM trie is never preallocated; an array always is.
PREALLOCATABLE = tuple(n for n in RULE_MAPS if MAP_SPECS[n].map_type == MapType.HASH)


def prealloc_flags(names) -> dict[str, int]:
    """Map flags by name for a loader: the named hash bands of both sets
    without BPF_F_NO_PREALLOC (their memory is taken when they are made)."""
    return with_sets({n: MAP_SPECS[n].flags & ~BPF_F_NO_PREALLOC for n in names})


# The one-entry ARRAYs the data path reads on every packet, which the objects
# define as global variables (xdpctl_maps.h, XC_GLOBAL): each is the data
# section ".data.<name>". libbpf names the map by the whole section name, the
# kernel by its first 15 characters (BPF_OBJ_NAME_LEN).
GLOBAL_MAPS = ("xc_stages", "xc_cfg", "xc_smp_cfg", "xc_clock")
_OBJ_NAME_MAX = 15
_BY_SECTION_NAME = {s: n for n in GLOBAL_MAPS for s in (".data." + n, (".data." + n)[:_OBJ_NAME_MAX])}


def map_name(loaded_name: str) -> str | None:
    """The name this package gives a map libbpf or the kernel calls
    ``loaded_name``: itself, or for a data section one of GLOBAL_MAPS (None:
    a data section that is none of them)."""
    if not loaded_name.startswith("."):
        return loaded_name
    return _BY_SECTION_NAME.get(loaded_name)


HOOK_MAPS = tuple(n for n, s in MAP_SPECS.items() if s.scope == "hook")
SHARED_MAPS = tuple(n for n, s in MAP_SPECS.items() if s.scope == "shared")
