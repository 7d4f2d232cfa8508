"""``tiergate emulate``: vLLM-compatible engines on emulated GPUs, several replicas per process."""

from __future__ import annotations

import click

from tiergate.cli.options import log_level_option


@click.command("emulate")
@click.option("--model", required=True, help="Model name from the performance catalog.")
@click.option("--gpu", required=True, help="GPU: H100, H200, A100-80GB, L40S, B200.")
@click.option("--tp", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1, 1024))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the first replica; the others follow. 0: free ports.",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How many times faster than the performance model the engines run.",
)
@click.option(
    "--faults",
    default="",
    help="Faults at start, e.g. error_rate=0.2,error_status=503,added_latency_ms=50.",
)
@click.option(
    "--storage",
    default="nvme",
    show_default=True,
    type=click.Choice(["nvme", "s3", "efs"]),
    help="Where weights load from at a cold start.",
)
@click.option(
    "--cold-start/--no-cold-start",
    default=False,
    show_default=True,
    help="Not ready for the model's load time after start.",
)
@click.option("--gpu-memory-utilization", default=0.9, show_default=True, type=float)
@click.option("--max-num-seqs", default=256, show_default=True, type=click.IntRange(1))
@click.option("--max-num-batched-tokens", default=8192, show_default=True, type=click.IntRange(1))
@click.option("--max-model-len", default=None, type=click.IntRange(1))
@click.option("--served-model-name", default=None, help="Name clients request (default: --model).")
@click.option(
    "--sample-output-length",
    is_flag=True,
    help="Generate a length drawn from 1..max_tokens unless a request sets ignore_eos.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@log_level_option
def command(  # noqa: PLR0917 - one parameter per click option
    model: str,
    gpu: str,
    tp: int,
    replicas: int,
    host: str,
    port: int,
    speed: float,
    faults: str,
    storage: str,
    cold_start: bool,
    gpu_memory_utilization: float,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    max_model_len: int | None,
    served_model_name: str | None,
    sample_output_length: bool,
    seed: int,
    log_level: str,
) -> None:
    """Serve REPLICAS emulated vLLM engines of MODEL on GPU, ports PORT to PORT+REPLICAS-1.

    Each answers vLLM's OpenAI-compatible API and /metrics, with latencies from the roofline
    performance model; /admin/faults, /admin/heal and /admin/crash inject failures. Runs until
    SIGINT or SIGTERM.
    """
    from pydantic import ValidationError

    from tiergate.cli import logs
    from tiergate.emulator import EmulatorConfig, SchedulerLimits, parse_faults
    from tiergate.emulator.serve import run

    logs.setup(log_level)
    try:
        config = EmulatorConfig(
            model=model,
            gpu=gpu,
            tp=tp,
            gpu_memory_utilization=gpu_memory_utilization,
            limits=SchedulerLimits(max_num_seqs, max_num_batched_tokens),
            max_model_len=max_model_len,
            speed=speed,
            storage=storage,
            cold_start=cold_start,
            faults=parse_faults(faults),
            sample_output_length=sample_output_length,
            served_model_name=served_model_name,
            seed=seed,
        )
        config.kv_blocks(config.perf_model())  # a model that does not fit fails here
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise click.UsageError(f"--faults: {where}: {error['msg']}") from exc
    except (KeyError, ValueError) as exc:
        # KeyError's str() quotes its message; the message itself reads better.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise click.UsageError(str(message)) from exc
    from tiergate.cli import exits
    from tiergate.errors import ListenError

    try:
        with exits.listening(host, range(port, port + replicas) if port else []):
            run(config, replicas, host, port, echo=click.echo)
    except ListenError as exc:
        exits.fail("emulate", exc)
