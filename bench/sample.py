"""Section sample: what the sample stage (bpf/include/sample.h) costs on the
drop path, per packet, with BPF_PROG_TEST_RUN: the hook program with the
drop list on, one 64-byte frame whose source a /24 deny matches, with the
sample stage off (no listener: one map lookup) and on with no reader (a
listener's flag set, nobody consuming: the ring buffer fills and each
sample is refused after the budget check and the clock read).

    .venv/bin/python -m bench.sample [--repeat N] [--runs N]
"""

from __future__ import annotations

import argparse
import os

from tests.support.progs import ProgramBench, temp_settings
from xdpctl import abi
from xdpctl.core.context import Context
from xdpctl.core.dump import reasons_mask
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import bpffs

from . import frames
from .common import log, pin_dir, temp_dir
from .testrun import XDP_DROP, time_prog


def measure(repeat: int, runs: int) -> list[dict]:
    """Rows: {stage, ns (median per packet), runs}."""
    s = temp_settings(temp_dir("state-sample"))
    s.pin_dir = pin_dir("sample")
    ctx = Context(s)
    ctx.kernel_ready()
    rows = []
    try:
        with ProgramBench(ctx, "xdp", ("droplist",)) as b:
            DropList(ctx).add([spec("203.0.113.0/24")])
            frame = frames.udp_from(4, int.from_bytes(bytes([203, 0, 113, 9]), "big"))
            for label, pid in (("off", 0), ("on, no reader", os.getpid())):
                with b.map("xc_smp_cfg") as m:
                    m.update(abi.U32.pack(0), abi.SAMPLE_CFG.pack(pid, 1, 1 << 30, reasons_mask(None, False), 0))
                ns, samples, ret = time_prog(b.fd, frame, repeat, runs)
                assert ret == XDP_DROP, ret
                rows.append({"stage": label, "ns": ns, "runs": samples})
                log(f"sample stage {label}: {ns:.1f} ns/pkt")
    finally:
        ctx.close()
        bpffs.remove_tree(s.pin_dir)
    return rows


def run(cfg) -> dict:
    """bench.run's section: the drop-path match with the stage off and on."""
    return {"rows": measure(cfg.repeat, cfg.runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rows = measure(args.repeat, args.runs)
    print("| sample stage | drop-path match, ns/pkt (median) |\n|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['ns']:.1f} |")


if __name__ == "__main__":
    main()
