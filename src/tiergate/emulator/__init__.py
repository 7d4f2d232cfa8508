"""A vLLM-compatible engine emulator driven by the roofline performance model (``tiergate.perf``).

Each replica behaves like one vLLM V1 engine on the emulated GPU: a continuous-batching
scheduler (``max_num_seqs``, token budget with chunked prefill, a KV cache of 16-token blocks,
preemption by recompute) whose steps take the time the performance model gives, run ``speed``
times faster on the wall clock. It serves vLLM's OpenAI-compatible API and exactly the
Prometheus metrics stock vLLM exposes (in model seconds), and injects faults on demand.

Programmatic use (tests, demo)::

    from tiergate.emulator import EmulatorCluster, EmulatorConfig, Faults

    config = EmulatorConfig("meta-llama/Llama-3.1-8B-Instruct", "H100", speed=50)
    async with EmulatorCluster(config, replicas=2) as cluster:
        cluster.urls            # ["http://127.0.0.1:PORT/v1", ...]: OpenAI base URLs
        cluster.origins         # ["http://127.0.0.1:PORT", ...]: /health, /metrics, /admin
        replica = cluster.replicas[0]
        replica.faults = Faults(error_rate=0.5)         # or POST /admin/faults
        await replica.crash(restart_after_s=1.0)        # or POST /admin/crash

Command line: ``tiergate emulate --model M --gpu G --replicas K --port P --speed X``.

Requests: ``max_tokens`` (default 256) tokens are generated, unless an ``output_tokens`` body
field (or ``x-emulator-output-tokens`` header) asks for fewer (finish reason ``stop``) or the
config's ``sample_output_length`` draws a length. Prompt tokens are estimated from the text
(one per four characters), counted from token ids, or given by a ``prompt_tokens`` body field
(or ``x-emulator-prompt-tokens`` header): see :mod:`tiergate.emulator.openai_format`.

The simulator reuses :class:`Scheduler` in virtual time: ``step = s.schedule(now)``, then
``s.complete(step, now + step.duration)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tiergate.emulator.config import EmulatorConfig
from tiergate.emulator.faults import Faults, parse_faults
from tiergate.emulator.scheduler import (
    EngineRequest,
    Scheduler,
    SchedulerLimits,
    State,
    Step,
    StepCost,
    StepResult,
)

if TYPE_CHECKING:
    from tiergate.emulator.cluster import EmulatorCluster
    from tiergate.emulator.engine import Engine
    from tiergate.emulator.metrics import VllmMetrics
    from tiergate.emulator.replica import Replica

# The parts with I/O (aiohttp, prometheus_client) load on first use, so that the simulator
# can use the scheduler without them.
_LAZY = {
    "EmulatorCluster": "tiergate.emulator.cluster",
    "Engine": "tiergate.emulator.engine",
    "Replica": "tiergate.emulator.replica",
    "VllmMetrics": "tiergate.emulator.metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "EmulatorCluster",
    "EmulatorConfig",
    "Engine",
    "EngineRequest",
    "Faults",
    "Replica",
    "Scheduler",
    "SchedulerLimits",
    "State",
    "Step",
    "StepCost",
    "StepResult",
    "VllmMetrics",
    "parse_faults",
]
