"""The columnar diff a full sync writes: against a dict oracle."""

from __future__ import annotations

import random

import pytest

from xdpctl.core import dlcompile as dl
from xdpctl.core.rules.tables import diff_entries


def _pack(d: dict[bytes, bytes]) -> tuple[bytes, bytes, int]:
    return b"".join(d), b"".join(d.values()), len(d)


def _split(buf: bytes, size: int) -> list[bytes]:
    return [buf[i:i + size] for i in range(0, len(buf), size)]


@pytest.mark.parametrize("ks", [4, 8, 20, 24])
@pytest.mark.parametrize("n_cur,n_want", [(0, 0), (0, 50), (50, 0), (300, 400)])
def test_diff_matches_dicts(ks, n_cur, n_want):
    rng = random.Random(ks * 1000 + n_cur + n_want)
    vs = 32
    pool = [rng.randbytes(ks) for _ in range(n_cur + n_want)]
    cur = {k: rng.randbytes(vs) for k in rng.sample(pool, n_cur)}
    want = {k: (cur[k] if k in cur and rng.random() < 0.5 else rng.randbytes(vs)) for k in rng.sample(pool, n_want)}
    d = diff_entries(_pack(cur), dl.Table(*_pack(want)), ks, vs)
    upd = dict(zip(_split(d.upd_keys, ks), _split(d.upd_vals, vs)))
    assert len(upd) == d.n_upd and upd == {k: v for k, v in want.items() if cur.get(k) != v}
    assert set(_split(d.new_keys, ks)) == set(want) - set(cur) and d.n_new == len(set(want) - set(cur))
    assert set(_split(d.dels, ks)) == set(cur) - set(want) and d.n_del == len(set(cur) - set(want))
    old = dict(zip(_split(d.old_keys, ks), _split(d.old_vals, vs)))
    assert d.n_old == len(old) and old == {k: v for k, v in cur.items() if k not in want or want[k] != v}


@pytest.mark.parametrize("ks", [8, 20])
@pytest.mark.parametrize("where", ["after", "before", "middle"])
def test_diff_of_an_image_that_adds_one_run(ks, where):
    """The image holds the map's entries unchanged plus one run of new
    ones (a list written beside rules): the writes are that run, as a slice
    of the image, new keys and values in step."""
    rng = random.Random(f"{ks}-{where}")
    vs = 32
    cur = {rng.randbytes(ks): rng.randbytes(vs) for _ in range(200)}
    run = {rng.randbytes(ks): rng.randbytes(vs) for _ in range(500)}
    items = list(cur.items())
    cut = {"after": len(items), "before": 0, "middle": 100}[where]
    want = dict(items[:cut] + list(run.items()) + items[cut:])
    d = diff_entries(_pack(cur), dl.Table(*_pack(want)), ks, vs)
    assert (d.n_upd, d.n_new, d.n_old, d.n_del) == (500, 500, 0, 0)
    assert d.upd_keys == b"".join(run) and d.upd_vals == b"".join(run.values())
    assert sorted(_split(d.new_keys, ks)) == sorted(run)
