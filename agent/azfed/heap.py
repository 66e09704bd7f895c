"""The garbage collector told what lives as long as the process (the agent's and the receiver's)."""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Move everything alive now (imports, API models and schemas, clients, the app) out of
    the garbage collector's sight: they live as long as the process, and each full collection
    walked all of them again. In the agent that was a fifth of a 1,000-instance cycle's CPU;
    in the receiver a 40-70 ms pause every couple of hundred reports, the slowest answer of
    all (bench/bench_agent.py, bench/bench_receiver.py). Called once, when started."""
    gc.collect()
    gc.freeze()
