"""tiergate: a control plane for cost-efficient LLM serving across on-prem, cloud and API tiers."""

from tiergate._version import __version__

__all__ = ["__version__"]
