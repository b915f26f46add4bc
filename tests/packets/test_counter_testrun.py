"""The protocol counter, run by the kernel on scapy-built frames
(BPF_PROG_TEST_RUN), against the Python reference model."""

from collections import Counter

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support import model
from tests.support.frames import protocol_mix
from xdpctl import abi


def _refused(bench, frame) -> bool:
    """A frame BPF_PROG_TEST_RUN does not run (on TC: an IP header cut
    short; see ProgramBench.refused) is checked to be refused and to be
    malformed for the model; tests/netns/test_droplist_traffic.py sends
    such frames through TC for real and checks what the counter made of
    them."""
    if not bench.refused(frame):
        return False
    bench.assert_refused(frame)
    assert model.classify(frame).l3 == abi.L3.MALFORMED, frame.hex()
    return True


XC_COUNTER_SLOTS_EXPECTED = {
    "tcp": (abi.L3.IPV4, abi.L4.TCP),
    "udp": (abi.L3.IPV4, abi.L4.UDP),
    "icmp": (abi.L3.IPV4, abi.L4.ICMP),
    "icmpv6": (abi.L3.IPV6, abi.L4.ICMPV6),
    "arp": (abi.L3.ARP, abi.L4.NONE),
    "vlan_udp": (abi.L3.IPV4, abi.L4.UDP),
    "qinq_tcp": (abi.L3.IPV4, abi.L4.TCP),
    "ipv6_ext_udp": (abi.L3.IPV6, abi.L4.UDP),
    "ipv4_options_tcp": (abi.L3.IPV4, abi.L4.TCP),
    "sctp": (abi.L3.IPV4, abi.L4.SCTP),
    "gre": (abi.L3.IPV4, abi.L4.GRE),
    "ipv4_fragment": (abi.L3.IPV4, abi.L4.FRAGMENT),
    "ipv6_fragment": (abi.L3.IPV6, abi.L4.FRAGMENT),
    "ipv6_routing_tcp": (abi.L3.IPV6, abi.L4.TCP),
    "other_ethertype": (abi.L3.OTHER, abi.L4.NONE),
    "truncated_ipv4": (abi.L3.MALFORMED, abi.L4.NONE),
    "truncated_tcp": (abi.L3.IPV4, abi.L4.MALFORMED),
}


def test_mix_counts_exact(counter_bench):
    """Each frame of the mix lands in exactly its slot, with exact bytes, and passes."""
    mix = protocol_mix()
    assert set(mix) == set(XC_COUNTER_SLOTS_EXPECTED)
    expected: Counter = Counter()
    expected_bytes: Counter = Counter()
    for name, frame in mix.items():
        if _refused(counter_bench, frame):
            assert (counter_bench.kind, name) == ("tc", "truncated_ipv4")
            continue
        res = counter_bench.run(frame)
        assert counter_bench.passed(res.retval), name
        l3, l4 = XC_COUNTER_SLOTS_EXPECTED[name]
        slot = abi.proto_slot(l3, l4)
        expected[slot] += 1
        expected_bytes[slot] += len(frame)
        # the reference model agrees with the table above
        assert abi.proto_slot(l3, l4) in model.proto_slots(model.classify(frame)), name
    expected[abi.PROTO_VLAN1] += 1
    expected_bytes[abi.PROTO_VLAN1] += len(mix["vlan_udp"])
    expected[abi.PROTO_VLAN2] += 1
    expected_bytes[abi.PROTO_VLAN2] += len(mix["qinq_tcp"])
    got = counter_bench.percpu_sums("xc_proto")
    assert {k: v[0] for k, v in got.items()} == dict(expected)
    assert {k: v[1] for k, v in got.items()} == dict(expected_bytes)


def test_repeat_counts(counter_bench):
    frame = protocol_mix()["udp"]
    counter_bench.run(frame, repeat=1000)
    got = counter_bench.percpu_sums("xc_proto")
    assert got == {abi.proto_slot(abi.L3.IPV4, abi.L4.UDP): (1000, 1000 * len(frame))}


def _slots_of(bench, frame):
    before = bench.percpu_sums("xc_proto")
    res = bench.run(frame)
    after = bench.percpu_sums("xc_proto")
    delta = {k: after[k][0] - before.get(k, (0, 0))[0] for k in after if after[k][0] != before.get(k, (0, 0))[0]}
    return res, delta


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(XC_COUNTER_SLOTS_EXPECTED)), cut=st.integers(min_value=14, max_value=120))
def test_truncations_match_model(counter_bench, name, cut):
    """Every prefix of every frame of the mix is classified as the model says."""
    frame = protocol_mix()[name][:cut]
    if _refused(counter_bench, frame):
        return
    counter_bench.reset("xc_proto")
    res, delta = _slots_of(counter_bench, frame)
    assert counter_bench.passed(res.retval)
    want = Counter(model.proto_slots(model.classify(frame)))
    assert delta == dict(want), (name, cut, frame.hex())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(min_size=0, max_size=80),
       ethertype=st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x1234]))
def test_random_bytes_match_model(counter_bench, body, ethertype):
    """Garbage after an Ethernet header never crashes or mis-attributes."""
    frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + ethertype.to_bytes(2, "big") + body
    if _refused(counter_bench, frame):
        return
    counter_bench.reset("xc_proto")
    res, delta = _slots_of(counter_bench, frame)
    assert counter_bench.passed(res.retval)
    assert delta == dict(Counter(model.proto_slots(model.classify(frame)))), frame.hex()
