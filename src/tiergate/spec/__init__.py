"""The fleet spec: one YAML document that every tiergate command reads."""

from tiergate.spec.comparator import Threshold, parse_threshold
from tiergate.spec.fleet import FallbackPolicy, Fleet, HealthProbe, Tier
from tiergate.spec.loader import load_fleet, parse_fleet
from tiergate.spec.models import FleetSpec

__all__ = [
    "FallbackPolicy",
    "Fleet",
    "FleetSpec",
    "HealthProbe",
    "Threshold",
    "Tier",
    "load_fleet",
    "parse_fleet",
    "parse_threshold",
]
