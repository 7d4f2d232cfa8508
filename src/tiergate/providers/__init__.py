"""Upstream providers behind one protocol, chosen by the tier's ``provider`` field."""

from __future__ import annotations

import importlib

from tiergate.providers.base import (
    Endpoint,
    Provider,
    UpstreamReply,
    UpstreamRequest,
    UpstreamStream,
)
from tiergate.spec import Tier

# provider name in the fleet spec -> "module:class"; a new provider is one file plus one entry.
REGISTRY = {
    "openai-compatible": "tiergate.providers.openai_compat:OpenAICompatProvider",
}


class UnsupportedProviderError(ValueError):
    """The fleet names a provider this build does not include."""


def create_provider(tier: Tier) -> Provider:
    """Instantiate the provider class registered for ``tier.provider``."""
    target = REGISTRY.get(tier.provider)
    if target is None:
        raise UnsupportedProviderError(
            f"provider '{tier.provider}' of tier '{tier.name}' is not available in this build "
            f"(available: {', '.join(sorted(REGISTRY))})"
        )
    module, _, cls = target.partition(":")
    provider: Provider = getattr(importlib.import_module(module), cls)(tier)
    return provider


__all__ = [
    "REGISTRY",
    "Endpoint",
    "Provider",
    "UnsupportedProviderError",
    "UpstreamReply",
    "UpstreamRequest",
    "UpstreamStream",
    "create_provider",
]
