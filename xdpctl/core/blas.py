"""numpy's BLAS library without its helper threads.

numpy's wheels link OpenBLAS, which starts a helper thread for each CPU
but one as numpy is imported; each helper spins on its CPU before it
sleeps. xdpctl calls no BLAS routine (its columns are sorted, searched,
compared and copied, never multiplied), so the helpers only take CPU from
the work that follows the import. Measured by hand on this 2-CPU machine:
importing numpy costs 0.18 s of CPU with the helper, 0.09 s without; a
fresh 1M-prefix `xdpctl import` used 0.34-0.49 s of user CPU with it and
0.25-0.33 s without, the spinning helper beside the parallel kernel writes
(docs/internals.md, "Performance of the control plane").

Set before numpy is imported: the CLI's entry point does it first thing
(`xdpctl serve` included; the service pays the spin once, at start). An
operator's own OPENBLAS_NUM_THREADS stands.
"""

from __future__ import annotations

import os
import sys

VAR = "OPENBLAS_NUM_THREADS"


def one_thread() -> bool:
    """Ask OpenBLAS for no helper threads. True when set; False when the
    environment says otherwise or numpy is loaded already (too late)."""
    if VAR in os.environ or "numpy" in sys.modules:
        return False
    os.environ[VAR] = "1"
    return True
