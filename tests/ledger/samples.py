"""Request records and keys for the ledger tests."""

from __future__ import annotations

import hashlib
from typing import Any

from tiergate.ledger.records import KeyRecord, RequestRecord

T0 = 1_793_491_200.0  # 2026-11-01T00:00:00Z


def request(n: int, **fields: Any) -> RequestRecord:
    """Record number ``n``: request id ``r{n}``, ``n`` seconds after T0, unless overridden."""
    values: dict[str, Any] = {
        "at": T0 + n,
        "request_id": f"r{n}",
        "key_id": "k1",
        "team": "search",
        "project": "ranker",
        "stage": "prod",
        "model": "qwen3-32b",
        "tier": "onprem",
        "attempts": 1,
        "fallbacks": "",
        "input_tokens": 100,
        "output_tokens": 20,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": 0.25,
        "latency_s": 0.5,
        "ttft_s": 0.1,
        "status": 200,
        "error": None,
    }
    values.update(fields)
    return RequestRecord(**values)


def key(key_id: str, secret: str, **fields: Any) -> KeyRecord:
    values: dict[str, Any] = {
        "key_id": key_id,
        "key_hash": hashlib.sha256(secret.encode()).hexdigest(),
        "name": None,
        "team": None,
        "project": None,
        "models": (),
        "budget_usd": None,
        "budget_days": 0,
        "rpm": None,
        "tpm": None,
        "created_at": T0,
    }
    values.update(fields)
    return KeyRecord(**values)
