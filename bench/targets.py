"""The targets of the gateway benchmark: direct, a bare aiohttp proxy, tiergate and LiteLLM.

Each gateway gets a config written to the run's work folder, pointing its one model
(``bench-tier``) at the shared zero-delay upstream on 127.0.0.1.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import procs
import upstream

BENCH_DIR = Path(__file__).resolve().parent
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
LITELLM_BIN = LITELLM_VENV / "bin" / "litellm"
LITELLM_SETUP = "bash bench/setup_litellm.sh"
CHAT_PATH = "/v1/chat/completions"
GATEWAY_MODEL = "bench-tier"

TIERGATE_READY_TIMEOUT_S = 30.0
LITELLM_READY_TIMEOUT_S = 120.0

# LiteLLM refuses to start without a master key (outside local-development mode), so it gets
# one, fresh for each run; every target receives it as "Authorization: Bearer KEY".
API_KEY = "sk-bench-" + secrets.token_hex(24)

# LiteLLM would otherwise try to fetch its model cost map from the internet at start-up,
# and log every request at DEBUG level.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_MASTER_KEY": API_KEY,
    "DISABLE_ADMIN_UI": "True",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
}
LITELLM_DROP_ENV = ("DATABASE_URL", "REDIS_HOST", "REDIS_URL")


@dataclass(frozen=True)
class Target:
    """How to reach one target: which model to ask for, and how to tell it is up."""

    name: str
    model: str
    ready_path: str
    ready_timeout_s: float


DIRECT = Target("direct", upstream.MODEL, "/health", 10.0)
BARE = Target("bare-aiohttp", GATEWAY_MODEL, "/health", 30.0)
TIERGATE = Target("tiergate", GATEWAY_MODEL, "/health", TIERGATE_READY_TIMEOUT_S)
LITELLM = Target("litellm", GATEWAY_MODEL, "/health/liveliness", LITELLM_READY_TIMEOUT_S)
ALL_TARGETS = {t.name: t for t in (DIRECT, BARE, TIERGATE, LITELLM)}


def tiergate_bin() -> Path:
    """The ``tiergate`` script beside the interpreter running the harness."""
    return Path(sys.executable).parent / "tiergate"


def _run_quiet(cmd: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)


def tiergate_serve_available() -> bool:
    """True when ``tiergate serve --help`` works."""
    path = tiergate_bin()
    return path.exists() and _run_quiet([str(path), "serve", "--help"]).returncode == 0


def tiergate_version() -> str:
    done = _run_quiet([str(tiergate_bin()), "--version"])
    return done.stdout.strip() or "unknown"


def litellm_version() -> str:
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    done = _run_quiet([str(LITELLM_VENV / "bin" / "python"), "-c", code])
    return done.stdout.strip() or "unknown"


def fleet_yaml(upstream_port: int) -> str:
    """A one-tier fleet spec whose tier points at the upstream."""
    return (
        "routing:\n"
        f"  cascadeOrder: [{GATEWAY_MODEL}]\n"
        "models:\n"
        f"  - name: {GATEWAY_MODEL}\n"
        "    provider: openai-compatible\n"
        f"    baseUrl: http://{procs.HOST}:{upstream_port}/v1\n"
        f"    model: {upstream.MODEL}\n"
        "    costPer1kTokens: 0.001\n"
    )


def litellm_yaml(upstream_port: int) -> str:
    """A LiteLLM proxy config: one model, no database, no callbacks, quiet."""
    return (
        "model_list:\n"
        f"  - model_name: {GATEWAY_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{upstream.MODEL}\n"
        f"      api_base: http://{procs.HOST}:{upstream_port}/v1\n"
        "      api_key: sk-bench-dummy\n"
        # The same price as the fleet's costPer1kTokens: 0.001, so LiteLLM knows the model.
        "    model_info:\n"
        "      input_cost_per_token: 0.000001\n"
        "      output_cost_per_token: 0.000001\n"
        "litellm_settings:\n"
        "  callbacks: []\n"
        "  success_callback: []\n"
        "  failure_callback: []\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
        "  telemetry: false\n"
        "general_settings:\n"
        "  disable_spend_logs: true\n"
    )


def start_tiergate(workdir: Path, upstream_port: int, cpu: int) -> tuple[procs.Service, int]:
    """``tiergate serve`` with one worker, pinned to ``cpu``."""
    config = workdir / "fleet.yaml"
    config.write_text(fleet_yaml(upstream_port))
    port = procs.free_port()
    cmd = [str(tiergate_bin()), "serve", "-c", str(config)]
    cmd += ["--host", procs.HOST, "--port", str(port), "--workers", "1"]
    return procs.spawn("tiergate", cmd, cpu=cpu, log_path=workdir / "tiergate.log"), port


def start_bare(workdir: Path, upstream_port: int, cpu: int) -> tuple[procs.Service, int]:
    """The bare aiohttp + uvloop proxy (``bench/bare_proxy.py``), pinned to ``cpu``."""
    port = procs.free_port()
    cmd = [sys.executable, str(BENCH_DIR / "bare_proxy.py")]
    cmd += ["--upstream", f"http://{procs.HOST}:{upstream_port}", "--port", str(port)]
    return procs.spawn("bare-aiohttp", cmd, cpu=cpu, log_path=workdir / "bare.log"), port


def start_litellm(workdir: Path, upstream_port: int, cpu: int) -> tuple[procs.Service, int]:
    """The LiteLLM proxy with one worker, pinned to ``cpu``."""
    config = workdir / "litellm.yaml"
    config.write_text(litellm_yaml(upstream_port))
    port = procs.free_port()
    cmd = [str(LITELLM_BIN), "--config", str(config)]
    cmd += ["--host", procs.HOST, "--port", str(port), "--num_workers", "1"]
    log = workdir / "litellm.log"
    service = procs.spawn(
        "litellm", cmd, cpu=cpu, log_path=log, env=LITELLM_ENV, drop_env=LITELLM_DROP_ENV
    )
    return service, port


def _chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _sse_contents(raw: bytes) -> list[str]:
    contents: list[str] = []
    for line in raw.splitlines():
        if not line.startswith(b"data:"):
            continue
        data = line[len(b"data:") :].strip()
        if not data or data == b"[DONE]":
            continue
        for choice in orjson.loads(data).get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                contents.append(text)
    return contents


def verify(target: Target, port: int) -> dict[str, Any]:
    """One plain and one streamed request: the upstream's content must come back."""
    status, raw = procs.http_post(port, CHAT_PATH, _chat_body(target.model, stream=False), API_KEY)
    if status != 200:
        raise procs.BenchError(f"{target.name}: POST {CHAT_PATH} gave {status}: {raw[:500]!r}")
    content = orjson.loads(raw)["choices"][0]["message"]["content"]
    if content != upstream.REPLY:
        raise procs.BenchError(f"{target.name} did not relay the upstream's reply: {content!r}")
    status, raw = procs.http_post(port, CHAT_PATH, _chat_body(target.model, stream=True), API_KEY)
    if status != 200:
        raise procs.BenchError(f"{target.name}: streamed POST gave {status}: {raw[:500]!r}")
    chunks = _sse_contents(raw)
    if "".join(chunks) != upstream.STREAM_TEXT:
        raise procs.BenchError(f"{target.name} did not relay the upstream's stream: {chunks!r}")
    return {"reply": content, "stream_content_chunks": len(chunks)}
