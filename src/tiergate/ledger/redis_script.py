"""Lua scripts in Redis, run by their SHA1 and sent in full only when Redis lacks them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tiergate.errors import StoreUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RedisScript:
    """One script; Redis's failures to answer become ``unavailable`` (a
    :class:`StoreUnavailableError` class), with ``what`` naming the store in the message."""

    def __init__(self, source: str, unavailable: type[StoreUnavailableError], what: str) -> None:
        from redis import exceptions  # noqa: PLC0415 - the redis extra is optional

        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._unavailable = unavailable
        self._what = what
        self._no_script = exceptions.NoScriptError
        self._redis_error = exceptions.RedisError

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            try:
                return await client.evalsha(self.sha, len(keys), *keys, *args)
            except self._no_script:  # a new or restarted Redis; EVAL also caches the script
                return await client.eval(self.source, len(keys), *keys, *args)
        except self._redis_error as exc:  # every failure of Redis to answer, translated here
            raise self._unavailable(f"{self._what}: redis: {exc}") from exc
