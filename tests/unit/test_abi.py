"""xdpctl/abi.py against bpf/include/xdpctl_abi.h and xdpctl_consts.h (text)
and against the BTF of the built objects in xdpctl/bpf/*.o (bpftool), so that
the Python and C layouts, sizes and limits cannot drift apart silently."""
from __future__ import annotations

import ctypes
import functools
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.support import emulation, model
from xdpctl import abi
from xdpctl.kernel import libbpf as L
from xdpctl.kernel.objects import _each
from xdpctl.core import dlcompile

ROOT = Path(__file__).resolve().parents[2]
BPF_SRC = ROOT / "bpf"
HEADER = BPF_SRC / "include" / "xdpctl_abi.h"
CONSTS_HEADER = BPF_SRC / "include" / "xdpctl_consts.h"
MAPS_HEADER = BPF_SRC / "include" / "xdpctl_maps.h"
OBJ_DIR = ROOT / "xdpctl" / "bpf"
# docs/internals.md, "Objects and programs"
OBJECTS = ("xdp_hook", "tc_hook", "xdp_droplist", "xdp_bits")

C_SIZES = {"__u8": 1, "__u16": 2, "__u32": 4, "__u64": 8}


# Every Python copy of an enum xc_consts member: (C name, Python name, value).
# The ones of xdpctl/abi.py are in abi.C_CONSTS; the others live next to the
# code that mirrors the C behaviour.
_L4_NEED = {cls: need for cls, need in model.L4_HDR.values()}
PY_CONSTS: list[tuple[str, str, int]] = [
    *((c, f"abi.C_CONSTS[{c!r}]", v) for c, v in abi.C_CONSTS.items()),
    ("XC_V4_L16_ENTRIES", "dlcompile.L16_ENTRIES", dlcompile.L16_ENTRIES),
    ("XC_TRIE_RETRY", "emulation.TRIE_RETRY", emulation.TRIE_RETRY),
    ("XC_VLAN_MAX", "model.VLAN_MAX", model.VLAN_MAX),
    ("XC_IPV6_EXT_MAX", "model.IPV6_EXT_MAX", model.IPV6_EXT_MAX),
    ("XC_ICMPV6_ND_MIN", "model.ND_TYPES.start", model.ND_TYPES.start),
    ("XC_ICMPV6_ND_MAX", "model.ND_TYPES.stop - 1", model.ND_TYPES.stop - 1),
    ("XC_L4_HLEN_TCP", "model.L4_HDR[TCP]", _L4_NEED[abi.L4.TCP]),
    ("XC_L4_HLEN_UDP", "model.L4_HDR[UDP]", _L4_NEED[abi.L4.UDP]),
    ("XC_L4_HLEN_SCTP", "model.L4_HDR[SCTP]", _L4_NEED[abi.L4.SCTP]),
    ("XC_L4_HLEN_ICMP", "model.L4_HDR[ICMP]", _L4_NEED[abi.L4.ICMP]),
    ("XC_L4_HLEN_ICMP", "model.L4_HDR[ICMPV6]", _L4_NEED[abi.L4.ICMPV6]),
    ("XC_L4_HLEN_GRE", "model.L4_HDR[GRE]", _L4_NEED[abi.L4.GRE]),
]


def _header_text(path: Path = HEADER) -> str:
    text = path.read_text()
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def _c_value(expr: str, env: dict[str, int]) -> int:
    """Value of a C constant expression over the names in env."""
    expr = re.sub(r"\b(\d+)[uU]\b", r"\1", expr.strip())
    return eval(expr, {}, dict(env))  # noqa: S307 - our own headers


# ---------------------------------------------------------------------------
# Against the header text
# ---------------------------------------------------------------------------
def _header_enums() -> dict[str, dict[str, int]]:
    """enum -> {member: value} of xdpctl_consts.h and xdpctl_abi.h (which
    includes it); a value may name members defined before it, as in C."""
    out: dict[str, dict[str, int]] = {}
    env: dict[str, int] = {}
    for path in (CONSTS_HEADER, HEADER):
        for name, body in re.findall(r"enum\s+(\w+)\s*\{(.*?)\}", _header_text(path), flags=re.S):
            vals = {}
            for m in re.finditer(r"(\w+)\s*=\s*([^,]+)", body):
                vals[m.group(1)] = env[m.group(1)] = _c_value(m.group(2), env)
            out[name] = vals
    return out


def _header_structs() -> dict[str, list[tuple[str, str, int]]]:
    """struct name -> [(field, C type, array length or 0)]; a length may be
    an expression over xdpctl_consts.h"""
    out = {}
    consts = _header_enums()["xc_consts"]
    for name, body in re.findall(r"struct\s+(\w+)\s*\{(.*?)\}\s*;", _header_text(), flags=re.S):
        fields = []
        for m in re.finditer(r"(__u\d+)\s+(\w+)\s*(?:\[([^\]]+)\])?\s*;", body):
            fields.append((m.group(2), m.group(1), _c_value(m.group(3), consts) if m.group(3) else 0))
        out[name] = fields
    return out


def test_header_enums_match():
    enums = _header_enums()
    consts = enums.pop("xc_consts")
    assert set(enums) == set(abi.C_ENUMS), "enum set differs between header and abi.C_ENUMS"
    for cname, vals in enums.items():
        py, prefix = abi.C_ENUMS[cname]
        want = {k[len(prefix):]: v for k, v in vals.items()}
        assert {m.name: int(m.value) for m in py} == want, cname
    for cname, where, value in PY_CONSTS:
        assert consts.get(cname) == value, f"{where} = {value}, {cname} = {consts.get(cname)}"


def test_header_defines_match():
    text = _header_text()
    defines = dict(re.findall(r"#define\s+(XC_\w+)\s+(.+)", text))
    defines.pop("XDPCTL_ABI_H", None)
    assert set(defines) == set(abi.C_DEFINES)
    # evaluate each C expression over the enum values and other defines
    env = {k: int(v) for k, v in abi.C_DEFINES.items()}
    for vals in _header_enums().values():
        env.update(vals)
    for name, expr in defines.items():
        assert _c_value(expr, env) == abi.C_DEFINES[name], name


def test_maps_defined_in_one_header():
    """Every map definition is in xdpctl_maps.h, every size in xdpctl_consts.h."""
    for path in sorted(BPF_SRC.rglob("*")):
        if not path.is_file() or path == MAPS_HEADER:
            continue
        text = _header_text(path)
        assert 'SEC(".maps")' not in text, f"{path.relative_to(ROOT)} defines a map"
        assert "max_entries" not in text, f"{path.relative_to(ROOT)} sizes a map"


def test_header_structs_match_ctypes():
    structs = _header_structs()
    assert set(structs) == set(abi.STRUCTS)
    for name, fields in structs.items():
        cls = abi.STRUCTS[name]
        py = [(f, t) for f, t in cls._fields_]
        assert [f for f, _ in py] == [f for f, _, _ in fields], name
        for (fname, ctype, n), (_, pt) in zip(fields, py):
            size = C_SIZES[ctype] * (n or 1)
            assert ctypes.sizeof(pt) == size, f"{name}.{fname}"


def _field_bytes(obj, fname) -> bytes:
    f = getattr(type(obj), fname)
    return bytes(memoryview(obj).cast("B")[f.offset:f.offset + f.size])


@pytest.mark.parametrize("name", sorted(abi.STRUCTS))
def test_struct_packers_match_ctypes(name):
    """The struct format of each layout reads and writes the same bytes as
    the ctypes Structure, field by field (pad bytes are written as zero)."""
    cls = abi.STRUCTS[name]
    packer = abi.PACKERS[name]
    assert packer.size == ctypes.sizeof(cls)
    raw = bytes(range(1, ctypes.sizeof(cls) + 1))
    obj = cls.from_buffer_copy(raw)
    vals = packer.unpack(raw)
    # an array of numbers is one packer value per element
    fields = [(f, i) for f, t in cls._fields_ if f != "pad"
              for i in (range(t._length_) if issubclass(t, ctypes.Array) and t._type_ is not abi.u8 else [None])]
    assert len(vals) == len(fields), name
    for (fname, i), v in zip(fields, vals):
        got = getattr(obj, fname) if i is None else getattr(obj, fname)[i]
        if isinstance(v, bytes):
            assert v == _field_bytes(obj, fname), f"{name}.{fname}"
        else:
            assert v == got, f"{name}.{fname}"
    repacked = packer.pack(*vals)
    # pad fields are written as zero
    want = bytearray(raw)
    if any(f == "pad" for f, _ in cls._fields_):
        pad = cls.pad
        want[pad.offset:pad.offset + pad.size] = bytes(pad.size)
    assert repacked == bytes(want)
    if name == "xc_port_key":
        assert repacked == raw[:9] + bytes(3) + raw[12:]


def test_pack_helpers():
    k = abi.pack_key4(1, 0x0A000001)
    assert k[4:] == bytes([10, 0, 0, 1]) and abi.xc_key4.from_buffer_copy(k).dir == 1
    k6 = abi.xc_key6.from_buffer_copy(abi.pack_key6(1, 1))
    assert k6.dir == 1 and bytes(k6.addr) == bytes(15) + b"\x01"
    t = abi.xc_trie6_key.from_buffer_copy(abi.pack_trie6_key(0, 0x20010DB8 << 96, 32))
    assert t.prefixlen == 64 and bytes(t.addr)[:4] == bytes.fromhex("20010db8")
    p = abi.xc_port_key.from_buffer_copy(abi.pack_port_key(1, 6, 443, 4, 0xC0000200, 24))
    assert (p.prefixlen, p.dir, p.proto, p.family) == (88, 1, 6, 4)
    assert bytes(p.addr) == bytes([192, 0, 2, 0]) + bytes(12)
    assert abi.pack_port_key(1, 6, 443, 4, 0, 0)[6:8] == (443).to_bytes(2, "big")
    v = abi.xc_rule_val.from_buffer_copy(abi.pack_rule_val(7, abi.Action.ALLOW, 24, 99))
    assert (v.rule_id, v.action, v.plen, v.flags, v.expires_ns) == (7, 2, 24, 0, 99)
    assert abi.unpack_rule_val(abi.pack_rule_val(7, 1, 8, 5)) == (7, 1, 8, 0, 5, 0, 0, 0, 0, 0)
    assert abi.unpack_rule_val(abi.pack_rule_val(7, 1, 8, 5, fb=(3, 2, 4, 0)))[5:] == (3, 2, 4, 0, 0)


def test_map_specs_cover_the_contract():
    # docs/internals.md tables
    hook = {"xc_stages", "xc_pkt", "xc_proto", "xc_dl_cnt", "xc_clock", "xc_lb_hook", "xc_lb_cnt", "xc_smp_cfg",
            "xc_smp_budget", "xc_smp_rb"}
    shared = {"xc_cfg", "xc_v4_l16", "xc_v4_l24", "xc_v4_l32", "xc_v6_l128", "xc_v6_l64",
              "xc_v6_l48", "xc_v6_l32", "xc_v6_trie", "xc_port_trie", "xc_mgmt", "xc_bits", "xc_v4_oa",
              "xc_rule_stats",
              "xc_lb_vips", "xc_lb_vip_cnt", "xc_lb_backends", "xc_lb_be_cnt", "xc_lb_ring",
              "xc_lb_conn"}
    shared |= {m + "_b" for m in abi.SET_TABLES}  # set B of the rule tables
    assert set(abi.HOOK_MAPS) == hook and set(abi.SHARED_MAPS) == shared
    for s in abi.MAP_SPECS.values():
        assert s.key_size == ctypes.sizeof(s.key) and s.value_size == ctypes.sizeof(s.value)
        if s.map_type in (abi.MapType.HASH, abi.MapType.LPM_TRIE):
            assert s.flags & abi.BPF_F_NO_PREALLOC, s.name
    assert abi.proto_slot(abi.L3.IPV6, abi.L4.UDP) == 12
    assert abi.PROTO_VLAN2 < abi.PROTO_SLOTS


# ---------------------------------------------------------------------------
# Against the BTF of the built objects
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _btf(obj: str) -> dict[int, dict]:
    path = OBJ_DIR / f"{obj}.o"
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(path), "format", "raw", "-j"],
                         capture_output=True, text=True, check=True).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def _objects() -> list[str]:
    missing = [o for o in OBJECTS if not (OBJ_DIR / f"{o}.o").exists()]
    if missing:
        pytest.fail(f"BPF objects missing in {OBJ_DIR}: {', '.join(o + '.o' for o in missing)}; "
                    "run make bpf")
    if shutil.which("bpftool") is None:
        pytest.fail("bpftool not found; it reads the BTF of the objects (apt install bpftool)")
    return list(OBJECTS)


def _resolve(types, tid):
    """Skip typedefs and qualifiers."""
    t = types[tid]
    while t["kind"] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
        t = types[t["type_id"]]
    return t


def _size(types, tid) -> int:
    t = _resolve(types, tid)
    if t["kind"] == "ARRAY":
        return t["nr_elems"] * _size(types, t["type_id"])
    if t["kind"] == "PTR":
        return 8
    return t["size"]


def _structs(types) -> dict[str, dict]:
    return {t["name"]: t for t in types.values() if t["kind"] == "STRUCT" and t["name"].startswith("xc_")}


def _btf_layout(types, t) -> tuple[int, list[tuple[str, int, int]]]:
    return t["size"], [(m["name"], m["bits_offset"] // 8, _size(types, m["type_id"])) for m in t["members"]]


def _ctypes_layout(cls) -> tuple[int, list[tuple[str, int, int]]]:
    return ctypes.sizeof(cls), [(f, getattr(cls, f).offset, getattr(cls, f).size) for f, _ in cls._fields_]


def test_btf_structs_match():
    seen: dict[str, list[str]] = {}
    for obj in _objects():
        types = _btf(obj)
        for name, t in _structs(types).items():
            if name not in abi.STRUCTS:
                continue  # program-internal types (e.g. parser state)
            seen.setdefault(name, []).append(obj)
            assert _btf_layout(types, t) == _ctypes_layout(abi.STRUCTS[name]), f"{name} in {obj}.o"
    # every ABI struct is a map key or value, so some object carries its BTF
    absent = sorted(set(abi.STRUCTS) - set(seen))
    assert not absent, f"no object has BTF for {absent}"


def _btf_enums(types) -> dict[str, dict[str, int]]:
    return {t["name"]: {v["name"]: v["val"] for v in t["values"]}
            for t in types.values() if t["kind"] in ("ENUM", "ENUM64")}


def test_btf_enums_match():
    # bpf/include/xdpctl_btf.h puts every ABI enum into every object's BTF
    for obj in _objects():
        enums = _btf_enums(_btf(obj))
        absent = sorted(set(abi.C_ENUMS) - set(enums))
        assert not absent, f"{obj}.o has no BTF for enums {absent}"
        for name, (py, prefix) in abi.C_ENUMS.items():
            got = {k[len(prefix):]: v for k, v in enums[name].items()}
            assert got == {m.name: int(m.value) for m in py}, f"enum {name} in {obj}.o"


def test_btf_consts_match_python():
    """Every Python copy of a size or limit equals the value the compiler
    saw, and every object was built with the same values."""
    first = None
    for obj in _objects():
        consts = _btf_enums(_btf(obj)).get("xc_consts")
        assert consts, f"{obj}.o has no BTF for enum xc_consts"
        first = first or consts
        assert consts == first, f"enum xc_consts in {obj}.o differs from {OBJECTS[0]}.o"
        for cname, where, value in PY_CONSTS:
            assert cname in consts, f"{where} copies {cname}, which {obj}.o does not define"
            assert consts[cname] == value, f"{where} = {value}, {cname} = {consts[cname]} in {obj}.o"
    # each map's default size has its name: XC_<MAP>_ENTRIES, or a slot count
    sizes = {c: v for c, v in first.items() if c.endswith("_ENTRIES")}
    slots = {"xc_proto": "XC_PROTO_SLOTS", "xc_dl_cnt": "XC_DL_SLOTS",
             "xc_lb_cnt": "XC_LB_SLOTS"}
    sizes.update({c: first[c] for c in slots.values()})
    used = set()
    for name, spec in abi.MAP_SPECS.items():
        base = name.removesuffix(abi.STANDBY_SUFFIX) if name.removesuffix(abi.STANDBY_SUFFIX) in abi.SET_TABLES \
            else name  # both sets of a rule map have the size of set A
        cname = slots.get(base, f"XC_{base[3:].upper()}_ENTRIES")
        assert sizes.get(cname) == spec.max_entries, f"{cname} != MAP_SPECS[{name!r}].max_entries"
        used.add(cname)
    assert not set(sizes) - used, f"sizes of no map in abi.MAP_SPECS: {sorted(set(sizes) - used)}"


def _map_defs(types) -> dict[str, dict]:
    """BTF-defined maps (.maps section) and the one-entry maps of abi.GLOBAL_MAPS
    (a data section ".data.<name>" holding the variable <name>): name ->
    {type, max_entries, map_flags, key_size, value_size, key, value}."""
    out = {}
    for sec in types.values():
        if sec["kind"] == "DATASEC" and sec["name"].startswith(".data."):
            assert len(sec["vars"]) == 1, f"{sec['name']} holds {len(sec['vars'])} variables"
            var = types[sec["vars"][0]["type_id"]]
            assert sec["name"] == ".data." + var["name"], f"{var['name']} in section {sec['name']}"
            st = _resolve(types, var["type_id"])
            out[var["name"]] = {"type": abi.MapType.ARRAY, "max_entries": 1, "map_flags": abi.BPF_F_MMAPABLE,
                                "key_size": 4, "value_size": _size(types, var["type_id"]),
                                "value": st.get("name") if st["kind"] == "STRUCT" else None}
            continue
        if sec["kind"] != "DATASEC" or sec["name"] != ".maps":
            continue
        for v in sec["vars"]:
            var = types[v["type_id"]]
            st = _resolve(types, var["type_id"])
            d = {}
            for m in st["members"]:
                mt = _resolve(types, m["type_id"])
                if mt["kind"] != "PTR":
                    continue
                target = _resolve(types, mt["type_id"])
                if m["name"] in ("key", "value"):
                    d[m["name"]] = target.get("name") if target["kind"] == "STRUCT" else None
                    d[m["name"] + "_size"] = _size(types, mt["type_id"])
                elif target["kind"] == "ARRAY":  # __uint(name, value)
                    d[m["name"]] = target["nr_elems"]
            out[var["name"]] = d
    return out


def test_btf_maps_match_specs():
    found: dict[str, list[str]] = {}
    for obj in _objects():
        for name, d in _map_defs(_btf(obj)).items():
            assert name in abi.MAP_SPECS, f"{obj}.o defines {name}, unknown to abi.MAP_SPECS"
            spec = abi.MAP_SPECS[name]
            found.setdefault(name, []).append(obj)
            where = f"{name} in {obj}.o"
            assert d.get("type") == spec.map_type, where
            assert d.get("key_size", 0) == spec.key_size, where  # a ring buffer has neither
            assert d.get("value_size", 0) == spec.value_size, where
            assert d.get("max_entries") == spec.max_entries, where
            assert d.get("map_flags", 0) == spec.flags, where
            for part in ("key", "value"):
                want = getattr(spec, part)
                if issubclass(want, ctypes.Structure) and d.get(part) is not None:
                    assert d[part] == want.__name__, f"{where}: {part} type"
    missing = sorted(set(abi.MAP_SPECS) - set(found))
    assert not missing, f"maps in abi.MAP_SPECS that no object defines: {missing}"


def _elf_sections(path: Path) -> list[str]:
    """Section names of a little-endian ELF64 object."""
    data = path.read_bytes()
    assert data[:6] == b"\x7fELF\x02\x01", f"{path.name}: not a little-endian ELF64 object"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):  # sh_name, sh_type, sh_flags, sh_addr, sh_offset, ...
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)

    strtab = header(shstrndx)[4]
    names = []
    for i in range(shnum):
        start = strtab + header(i)[0]
        names.append(data[start:data.index(b"\0", start)].decode())
    return names


def _libbpf_map_names(obj: str) -> set[str]:
    """The names libbpf gives the maps of an object (opened, not loaded)."""
    o = L.bpf_object__open_file(str(OBJ_DIR / f"{obj}.o").encode(), None)
    assert o, f"libbpf cannot open {obj}.o"
    try:
        return {L.bpf_map__name(m).decode() for m in _each(o, L.bpf_object__next_map)}
    finally:
        L.bpf_object__close(o)


def test_objects_have_no_other_global_data():
    """libbpf turns .data, .rodata, .bss and .kconfig sections into maps of
    their own; the objects have only those of abi.GLOBAL_MAPS, so .maps and
    they hold every map the objects create."""
    allowed = {".data." + n for n in abi.GLOBAL_MAPS}
    for obj in _objects():
        data = [n for n in _elf_sections(OBJ_DIR / f"{obj}.o")
                if re.match(r"\.(data|rodata|bss|kconfig)(\.|$)", n) and n not in allowed]
        assert not data, f"{obj}.o has global data sections {data}"


def test_global_map_names():
    """libbpf names a data-section map by its section name, the kernel by
    that name's first 15 characters; each of abi.GLOBAL_MAPS is known by
    both (as every object that defines it names it), no map of .maps is
    taken for one, and no other data section is taken for a map."""
    for n in abi.GLOBAL_MAPS:
        assert abi.map_name(".data." + n) == n and abi.map_name((".data." + n)[:15]) == n
        assert abi.map_name(n) == n
    for obj in _objects():
        named = _libbpf_map_names(obj)
        for n in abi.GLOBAL_MAPS:
            if ".data." + n in _elf_sections(OBJ_DIR / f"{obj}.o"):
                assert {abi.map_name(x) for x in named} >= {n}, f"{obj}.o: {sorted(named)}"
    assert abi.map_name(".data.other") is None and abi.map_name(".rodata") is None
