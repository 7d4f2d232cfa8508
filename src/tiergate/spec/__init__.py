"""The fleet spec: one YAML document that every tiergate command reads."""

from tiergate.spec.comparator import Threshold, parse_threshold
from tiergate.spec.fleet import (
    BreakerSettings,
    FallbackPolicy,
    Fleet,
    GatewaySettings,
    HealthProbe,
    SpilloverLimits,
    Tier,
    Timeouts,
)
from tiergate.spec.loader import load_fleet, parse_fleet
from tiergate.spec.models import FleetSpec

__all__ = [
    "BreakerSettings",
    "FallbackPolicy",
    "Fleet",
    "FleetSpec",
    "GatewaySettings",
    "HealthProbe",
    "SpilloverLimits",
    "Threshold",
    "Tier",
    "Timeouts",
    "load_fleet",
    "parse_fleet",
    "parse_threshold",
]
