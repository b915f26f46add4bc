"""xdpctl/abi.py against bpf/include/xdpctl_abi.h (text) and against the BTF
of the built objects in xdpctl/bpf/*.o (bpftool), so that the Python and C
layouts cannot drift apart silently."""
from __future__ import annotations

import ctypes
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xdpctl import abi

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "bpf" / "include" / "xdpctl_abi.h"
OBJ_DIR = ROOT / "xdpctl" / "bpf"
# docs/internals.md, "Objects and programs"
OBJECTS = ("xdp_root", "xdp_counter", "xdp_droplist", "tc_root", "tc_counter", "tc_droplist")

C_SIZES = {"__u8": 1, "__u16": 2, "__u32": 4, "__u64": 8}


def _header_text() -> str:
    text = HEADER.read_text()
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


# ---------------------------------------------------------------------------
# Against the header text
# ---------------------------------------------------------------------------
def _header_enums() -> dict[str, dict[str, int]]:
    out = {}
    for name, body in re.findall(r"enum\s+(\w+)\s*\{(.*?)\}", _header_text(), flags=re.S):
        vals = {}
        for m in re.finditer(r"(\w+)\s*=\s*(\d+)", body):
            vals[m.group(1)] = int(m.group(2))
        out[name] = vals
    return out


def _header_structs() -> dict[str, list[tuple[str, str, int]]]:
    """struct name -> [(field, C type, array length or 0)]"""
    out = {}
    for name, body in re.findall(r"struct\s+(\w+)\s*\{(.*?)\}\s*;", _header_text(), flags=re.S):
        fields = []
        for m in re.finditer(r"(__u\d+)\s+(\w+)\s*(?:\[(\d+)\])?\s*;", body):
            fields.append((m.group(2), m.group(1), int(m.group(3) or 0)))
        out[name] = fields
    return out


def test_header_enums_match():
    enums = _header_enums()
    assert set(enums) == set(abi.C_ENUMS), "enum set differs between header and abi.C_ENUMS"
    for cname, vals in enums.items():
        py, prefix = abi.C_ENUMS[cname]
        want = {k[len(prefix):]: v for k, v in vals.items()}
        assert {m.name: int(m.value) for m in py} == want, cname


def test_header_defines_match():
    text = _header_text()
    defines = dict(re.findall(r"#define\s+(XC_\w+)\s+(.+)", text))
    defines.pop("XDPCTL_ABI_H", None)
    assert set(defines) == set(abi.C_DEFINES)
    env = {k: int(v) for k, v in abi.C_DEFINES.items()}
    for name, expr in defines.items():
        # evaluate the C expression over the enum values and other defines
        expr = expr.replace("1U", "1").strip()
        for cname, vals in _header_enums().items():
            for k, v in vals.items():
                env[k] = v
        assert eval(expr, {}, dict(env)) == abi.C_DEFINES[name], name  # noqa: S307 - our own header


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
    fields = [f for f, _ in cls._fields_ if f != "pad"]
    assert len(vals) == len(fields), name
    for fname, v in zip(fields, vals):
        got = getattr(obj, fname)
        if isinstance(v, bytes):
            assert v == _field_bytes(obj, fname), f"{name}.{fname}"
        else:
            assert v == got, f"{name}.{fname}"
    repacked = packer.pack(*vals)
    if name == "xc_port_key":
        assert repacked == raw[:9] + bytes(3) + raw[12:]
    else:
        assert repacked == raw


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
    hook = {"xc_chain", "xc_proto", "xc_dl_cnt"}
    shared = {"xc_cfg", "xc_v4_l16", "xc_v4_l24", "xc_v4_l32", "xc_v6_l128", "xc_v6_l64",
              "xc_v6_l48", "xc_v6_l32", "xc_v6_trie", "xc_port_trie", "xc_rule_stats"}
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


def test_btf_enums_match():
    for obj in _objects():
        types = _btf(obj)
        for t in types.values():
            if t["kind"] not in ("ENUM", "ENUM64") or t["name"] not in abi.C_ENUMS:
                continue
            py, prefix = abi.C_ENUMS[t["name"]]
            got = {v["name"][len(prefix):]: v["val"] for v in t["values"]}
            assert got == {m.name: int(m.value) for m in py}, f"enum {t['name']} in {obj}.o"


def _map_defs(types) -> dict[str, dict]:
    """BTF-defined maps (.maps section): name -> {type, max_entries, map_flags,
    key_size, value_size, key, value}."""
    out = {}
    for sec in types.values():
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
            if not name.startswith("xc_"):
                continue
            assert name in abi.MAP_SPECS, f"{obj}.o defines {name}, unknown to abi.MAP_SPECS"
            spec = abi.MAP_SPECS[name]
            found.setdefault(name, []).append(obj)
            where = f"{name} in {obj}.o"
            assert d.get("type") == spec.map_type, where
            assert d.get("key_size") == spec.key_size, where
            assert d.get("value_size") == spec.value_size, where
            assert d.get("max_entries") == spec.max_entries, where
            assert d.get("map_flags", 0) == spec.flags, where
            for part in ("key", "value"):
                want = getattr(spec, part)
                if issubclass(want, ctypes.Structure) and d.get(part) is not None:
                    assert d[part] == want.__name__, f"{where}: {part} type"
    missing = sorted(set(abi.MAP_SPECS) - set(found))
    assert not missing, f"maps in abi.MAP_SPECS that no object defines: {missing}"
