"""Fixtures for the Bedrock provider's tests: fake Bedrock Runtime servers.

``fake_bedrock`` starts :class:`tests.providers.bedrock.fake.FakeBedrock` servers and closes them
at teardown: ``fake = await fake_bedrock(region="eu-west-1")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.providers.bedrock.fake import FakeBedrock


@pytest.fixture
async def fake_bedrock() -> AsyncIterator[Callable[..., Awaitable[FakeBedrock]]]:
    started: list[FakeBedrock] = []

    async def start(**kwargs: Any) -> FakeBedrock:
        fake = await FakeBedrock(**kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.close()
