"""Upstream providers behind one protocol, chosen by the tier's ``provider`` field."""

from __future__ import annotations

import importlib

from tiergate.providers.base import (
    Endpoint,
    Provider,
    ProviderSetupError,
    UpstreamReply,
    UpstreamRequest,
    UpstreamStream,
    Usage,
)
from tiergate.spec import Tier

# provider name in the fleet spec -> "module:class"; a new provider is one file plus one entry.
REGISTRY = {
    "openai-compatible": "tiergate.providers.openai_compat:OpenAICompatProvider",
    "bedrock": "tiergate.providers.bedrock:BedrockProvider",
}


class UnsupportedProviderError(ProviderSetupError):
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
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise UnsupportedProviderError(
            f"provider '{tier.provider}' of tier '{tier.name}' needs a package that is not "
            f"installed ({exc.name}): install tiergate[{tier.provider}]"
        ) from exc
    provider: Provider = getattr(loaded, cls)(tier)
    return provider


__all__ = [
    "REGISTRY",
    "Endpoint",
    "Provider",
    "ProviderSetupError",
    "UnsupportedProviderError",
    "UpstreamReply",
    "UpstreamRequest",
    "UpstreamStream",
    "Usage",
    "create_provider",
]
