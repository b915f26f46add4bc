"""The presence bitmap's words of a compiled image (presence.image_words),
computed with array operations (by the C helper, and by its numpy twin),
against one bit per key by bit_of."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from xdpctl import abi, native
from xdpctl.core.rules import presence


def _image(rng: random.Random, n: int) -> tuple[dict, SimpleNamespace, set[int]]:
    keys: dict[str, list[bytes]] = {band: [] for band in presence.BANDS}
    for _ in range(n):
        d = rng.randrange(2)
        # crowded: a few /16s and /32s, so many keys share a word and many share a bit
        if rng.random() < 0.5:
            band = rng.choice(presence.V4_BANDS)
            a = (rng.choice((0x0A000000, 0xC0A80000, 0x01020000)) | rng.randrange(1 << 12)) << 4
            keys[band].append(abi.pack_key4(d, a & 0xFFFFFFFF))
        else:
            band = rng.choice(presence.V6_BANDS)
            a = (0x20010DB8 << 96) | (rng.randrange(1 << 10) << 90) | rng.getrandbits(64)
            keys[band].append(abi.KEY6.pack(d, a.to_bytes(16, "big")))
    keys = {b: list(dict.fromkeys(k)) for b, k in keys.items()}
    compiled = {b: SimpleNamespace(keys=b"".join(k), count=len(k)) for b, k in keys.items()}
    compiled[presence.TRIE] = SimpleNamespace(keys=b"", count=0)
    sizes = {b: (abi.KEY4.size if b in presence.V4_BANDS else abi.KEY6.size) for b in presence.BANDS}
    sizes[presence.TRIE] = abi.TRIE6_KEY.size
    kt = SimpleNamespace(table=lambda name, rule_set: SimpleNamespace(key_size=sizes[name]))
    want = {presence.bit_of(b, k) for b, ks in keys.items() for k in ks}
    return compiled, kt, want


@pytest.mark.parametrize("engine", ["native", "numpy"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_image_words_hold_exactly_the_bits_of_the_keys(seed, engine, monkeypatch):
    assert native.lib() is not None
    if engine == "numpy":
        monkeypatch.setattr(native, "lib", lambda: None)
    compiled, kt, want = _image(random.Random(seed), 5000)
    words = presence.image_words(compiled, kt, 0)
    got = set(np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")).tolist())
    assert got == want
    assert len(want) > 100 and len({b >> 6 for b in want}) < len(want)  # words shared by several bits


def test_the_c_helper_refuses_a_bit_past_the_words():
    """A bit past the bitmap is an error, never a write past its end; a
    bitmap it cannot write in place is refused before any bit is set."""
    words = np.zeros(4, np.uint64)
    native.or_bits(words, np.array([0, 65, 255, 65], np.uint32))
    assert words.tolist() == [1, 2, 0, 1 << 63]
    with pytest.raises(ValueError, match="past the 4 words"):
        native.or_bits(words, np.array([256], np.uint32))
    with pytest.raises(ValueError, match="contiguous, writable uint64"):
        native.or_bits(np.zeros(8, np.uint64)[::2], np.array([1], np.uint32))
