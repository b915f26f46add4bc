"""Rates in the CLI's tables are scaled to a unit a person reads at a glance."""
from __future__ import annotations

import pytest

from xdpctl.cli.hooks import scaled


@pytest.mark.parametrize("value,bits,packets", [
    (0, "0 bit/s", "0 pkt/s"),
    (999, "999 bit/s", "999 pkt/s"),
    (1500, "1.5 kbit/s", "1.5 kpkt/s"),
    (12_345, "12.3 kbit/s", "12.3 kpkt/s"),
    (2_500_000, "2.5 Mbit/s", "2.5 Mpkt/s"),
    (1_234_000_000, "1.23 Gbit/s", "1,234 Mpkt/s"),
    (999_700_000, "1 Gbit/s", "1,000 Mpkt/s"),
    (5e12, "5,000 Gbit/s", "5,000,000 Mpkt/s"),
])
def test_rates_are_scaled(value, bits, packets):
    assert scaled(value, "bit/s") == bits
    assert scaled(value, "pkt/s", "kM") == packets
