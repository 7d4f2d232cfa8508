"""``tiergate fetch``: the model-weight fetcher of an init container."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from tiergate.cli.exits import (  # the README's table; docs/model-cache.md
    EXIT_LOCK,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_SPACE,
    EXIT_TRANSFER,
    EXIT_USAGE,
    EXIT_VERIFY,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tiergate.modelcache.fetch import FetchSummary
    from tiergate.modelcache.sources.base import Source
    from tiergate.modelcache.transfer import TransferSettings


# scheme -> (module, class, the extra that provides its dependencies)
SOURCES = {
    "file": ("tiergate.modelcache.sources.local", "LocalSource", None),
    "http": ("tiergate.modelcache.sources.http", "HttpSource", "gateway"),
    "https": ("tiergate.modelcache.sources.http", "HttpSource", "gateway"),
    "s3": ("tiergate.modelcache.sources.s3", "S3Source", "s3"),
    "hf": ("tiergate.modelcache.sources.hf", "HfSource", "hf"),
}


@dataclass(frozen=True, slots=True)
class _Failure:
    """How a fetch ended badly: the exit code and the one line that says why."""

    code: int
    message: str


@click.command("fetch")
@click.argument("source", required=False)
@click.argument("dest", required=False, type=click.Path(file_okay=False))
@click.option("--include", multiple=True, metavar="GLOB", help="Fetch only matching files.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching files.")
@click.option("--connections", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Ranged reads in flight, across and within files.")  # fmt: skip
@click.option("--chunk-mb", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Size of one ranged read (and of what a restart may fetch again).")  # fmt: skip
@click.option("--retries", type=click.IntRange(0, 1000), default=8, show_default=True,
              help="Retries of one ranged read (jittered backoff).")  # fmt: skip
@click.option("--verify", is_flag=True,
              help="Re-hash every file of a complete DEST; fetch corrupt ones again.")  # fmt: skip
@click.option("--max-repairs", type=click.IntRange(0, 100), default=2, show_default=True,
              help="Re-downloads of a file whose sha256 does not match.")  # fmt: skip
@click.option("--lock-timeout", type=click.FloatRange(0), default=None, metavar="S",
              help="Give up (exit 7) when another fetcher holds DEST longer "
              "[default: wait].")  # fmt: skip
@click.option("--trust-marker", is_flag=True,
              help="Accept a complete DEST of the same source and globs without listing the "
              "source (no network on restart).")  # fmt: skip
@click.option("--wait-for-marker", type=click.Path(), default=None, metavar="PATH",
              help="Leader/worker: wait for a completion marker at PATH (the leader's DEST on "
              "a shared filesystem) before fetching.")  # fmt: skip
@click.option("--wait-timeout", type=click.FloatRange(0), default=3600.0, show_default=True,
              metavar="S", help="How long --wait-for-marker waits (exit 7 after).")  # fmt: skip
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default=None,
              help="table: progress bars and a summary table; json: JSON lines (progress, "
              "summary, error)  [default: table on a terminal, json elsewhere]")  # fmt: skip
@click.option("--json", "json_lines", is_flag=True, hidden=True,
              help="The same as --format json (kept for older scripts).")  # fmt: skip
@click.option("--write-manifest", is_flag=True,
              help="Instead of fetching: hash the files of directory SOURCE and write its "
              "tiergate-manifest.json.")  # fmt: skip
def command(  # noqa: PLR0917 - one parameter per click option
    source: str | None,
    dest: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    connections: int,
    chunk_mb: int,
    retries: int,
    verify: bool,
    max_repairs: int,
    lock_timeout: float | None,
    trust_marker: bool,
    wait_for_marker: str | None,
    wait_timeout: float,
    output_format: str | None,
    json_lines: bool,
    write_manifest: bool,
) -> None:
    """Fetch the model at SOURCE into the directory DEST, verified, and mark it complete.

    SOURCE is hf://org/repo[@revision], s3://bucket/prefix, https://host/path (a file, or a
    directory with a tiergate-manifest.json), or file:///dir (a shared filesystem).

    A DEST already complete for this plan is left as it is (under a second). Several
    fetchers of one DEST take turns: one downloads, the others then find it complete.

    Exit codes: 0 done; 2 usage or bad SOURCE URL; 3 not enough space in DEST; 4 verification
    failed; 5 source error (denied, not found); 6 listing or transfer failed after retries; 7
    lock or leader-marker wait timed out.
    """
    import asyncio
    from pathlib import Path

    if json_lines:
        if output_format == "table":
            raise click.UsageError("--json is --format json: it excludes --format table")
        output_format = "json"
    if output_format is None:
        # Off a terminal (init container logs) everything is JSON lines.
        output_format = "table" if sys.stdout.isatty() else "json"
    json_lines = output_format == "json"
    if write_manifest:
        if source is None or dest is not None:
            raise click.UsageError("--write-manifest takes one argument: the directory to describe")
        _exit(asyncio.run(_write_manifest(source, json_lines)), json_lines)
    if source is None or dest is None:
        raise click.UsageError("SOURCE and DEST are required")
    from tiergate.modelcache.transfer import TransferSettings

    settings = TransferSettings(
        connections=connections, chunk_bytes=chunk_mb * 1024 * 1024, retries=retries
    )
    opened = _open_source(source, connections)
    code = asyncio.run(
        _fetch(
            opened,
            Path(dest),
            include=include,
            exclude=exclude,
            settings=settings,
            verify=verify,
            max_repairs=max_repairs,
            lock_timeout=lock_timeout,
            trust_marker=trust_marker,
            wait_for_marker=Path(wait_for_marker) if wait_for_marker else None,
            wait_timeout=wait_timeout,
            json_lines=json_lines,
        )
    )
    _exit(code, json_lines)


def _source_url(source: str) -> str:
    """``source`` as a URL: a path without a scheme is a local directory."""
    from pathlib import Path

    if "://" in source:
        return source
    return Path(source).resolve().as_uri()


def _open_source(source: str, connections: int) -> Source:
    """The source for a URL, its module imported only now; a bad or unsupported URL is a
    usage error (exit 2)."""
    import importlib

    from tiergate.modelcache.errors import SourceError

    url = _source_url(source)
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SOURCES:
        supported = ", ".join(f"{name}://" for name in SOURCES)
        raise click.BadParameter(
            f"{source}: unsupported scheme (use {supported})", param_hint="SOURCE"
        )
    module_name, class_name, extra = SOURCES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f" (pip install 'tiergate[{extra}]')" if extra else ""
        raise click.UsageError(f"{scheme}:// sources are not available here: {exc}{hint}") from exc
    source_class = getattr(module, class_name)
    try:
        if scheme == "s3":
            opened: Source = source_class(url, max_connections=connections)
        else:
            opened = source_class(url)
    except (SourceError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="SOURCE") from exc
    return opened


async def _fetch(
    source: Source,
    dest: Path,
    *,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    settings: TransferSettings,
    verify: bool,
    max_repairs: int,
    lock_timeout: float | None,
    trust_marker: bool,
    wait_for_marker: Path | None,
    wait_timeout: float,
    json_lines: bool,
) -> FetchSummary | _Failure:
    """Run the fetch: its summary, or why it failed."""
    from tiergate.modelcache.errors import FetchError
    from tiergate.modelcache.fetch import fetch
    from tiergate.modelcache.lock import wait_for_marker as wait
    from tiergate.modelcache.progress import make_progress

    progress = make_progress(json_lines=json_lines, stream=sys.stdout)
    try:
        if wait_for_marker is not None:
            await wait(wait_for_marker, timeout_s=wait_timeout)
        return await fetch(
            source,
            dest,
            include=include,
            exclude=exclude,
            settings=settings,
            verify_all=verify,
            max_repairs=max_repairs,
            progress=progress,
            lock_timeout_s=lock_timeout,
            trust_marker=trust_marker,
        )
    except FetchError as exc:
        return _Failure(_exit_code(exc), str(exc))
    except OSError as exc:  # the DEST itself: not creatable, not writable
        return _Failure(EXIT_TRANSFER, f"{dest}: {exc}")
    finally:
        progress.close()
        await source.close()


def _exit_code(error: Exception) -> int:
    from tiergate.modelcache.errors import LockTimeoutError, SourceError, SpaceError, VerifyError

    for kind, code in (
        (LockTimeoutError, EXIT_LOCK),
        (SpaceError, EXIT_SPACE),
        (VerifyError, EXIT_VERIFY),
        (SourceError, EXIT_SOURCE),
    ):
        if isinstance(error, kind):
            return code
    return EXIT_TRANSFER


async def _write_manifest(directory: str, json_lines: bool) -> int | _Failure:
    import asyncio
    import json
    from pathlib import Path
    from urllib.parse import unquote, urlsplit

    from tiergate.modelcache.manifest import MANIFEST_NAME, write_manifest
    from tiergate.modelcache.select import human_bytes

    root = Path(unquote(urlsplit(directory).path) if "://" in directory else directory)
    if not await asyncio.to_thread(root.is_dir):
        return _Failure(EXIT_USAGE, f"{directory}: not a directory")
    try:
        entries = await write_manifest(root)
    except OSError as exc:
        return _Failure(EXIT_SOURCE, f"{root}: {exc}")
    total = sum(entry.size for entry in entries)
    path = root / MANIFEST_NAME
    if json_lines:
        line = {"event": "manifest", "path": str(path), "files": len(entries), "bytes": total}
        click.echo(json.dumps(line))
    else:
        click.echo(f"wrote {path}: {len(entries)} files, {human_bytes(total)}")
    return EXIT_OK


def _exit(result: int | FetchSummary | _Failure, json_lines: bool) -> None:
    """Print the summary or the error line, and exit with the code."""
    import json

    from tiergate.modelcache.progress import print_summary

    if isinstance(result, int):
        raise SystemExit(result)
    if isinstance(result, _Failure):
        if json_lines:
            line = {"event": "error", "exit_code": result.code, "error": result.message}
            click.echo(json.dumps(line))
        click.echo(f"tiergate fetch: error: {result.message}", err=True)
        raise SystemExit(result.code)
    print_summary(result, json_lines=json_lines, stream=sys.stdout)
    raise SystemExit(EXIT_OK)
