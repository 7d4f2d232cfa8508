"""Simulation inputs and engine: workloads (trace readers) first; the simulator builds on them."""

from tiergate.sim.workloads import (
    TraceError,
    TraceRequest,
    read_azure_csv,
    read_mooncake_jsonl,
    read_trace,
    scale_rate,
    slice_trace,
    speed_up,
    trace_format,
)

__all__ = [
    "TraceError",
    "TraceRequest",
    "read_azure_csv",
    "read_mooncake_jsonl",
    "read_trace",
    "scale_rate",
    "slice_trace",
    "speed_up",
    "trace_format",
]
