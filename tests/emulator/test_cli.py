"""``tiergate emulate`` as a process: replicas on free ports, faults from the command line,
clean exit on SIGTERM, clear errors for unknown models."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp
import pytest

from tests.emulator.conftest import MODEL


async def test_emulate_serves_replicas_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiergate", "emulate", "--model", MODEL, "--gpu", "h100",
        "--replicas", "2", "--port", "0", "--speed", "100", "--faults", "error_rate=1,error_status=429",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(3)]
        assert "KV cache" in lines[0]
        urls = [re.search(r"(http://\S+)/v1", line).group(1) for line in lines[1:]]  # type: ignore[union-attr]
        assert len(set(urls)) == 2
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for url in urls:
                async with http.get(url + "/health") as response:
                    assert response.status == 200
                body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(url + "/v1/chat/completions", json=body) as response:
                    assert response.status == 429  # the fault given on the command line
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--model",
            "meta-llama/Llama-3.1-8B-Instruk",
            "did you mean 'meta-llama/Llama-3.1-8B-Instruct'",
        ),
        ("--gpu", "X100", "did you mean 'H100'"),
        (
            "--faults",
            "error_rate=3",
            "--faults: error_rate: Input should be less than or equal to 1",
        ),
    ],
)
async def test_bad_options_are_usage_errors(option: str, value: str, message: str) -> None:
    arguments = {"--model": MODEL, "--gpu": "H100", "--port": "0", option: value}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tiergate", "emulate", *(part for pair in arguments.items() for part in pair),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert message in stderr.decode()
