"""GPU and model catalog, and the roofline performance model of a serving engine."""

from tiergate.perf.catalog import (
    GPU,
    GPUS,
    INSTANCES,
    MODELS,
    InstanceType,
    ModelSpec,
    gpu_named,
    instance_named,
    model_named,
)
from tiergate.perf.roofline import STORAGE_BYTES_PER_S, Efficiency, PerfModel

__all__ = [
    "GPU",
    "GPUS",
    "INSTANCES",
    "MODELS",
    "STORAGE_BYTES_PER_S",
    "Efficiency",
    "InstanceType",
    "ModelSpec",
    "PerfModel",
    "gpu_named",
    "instance_named",
    "model_named",
]
