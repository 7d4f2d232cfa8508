"""``tiergate check``: validate fleet specs and show the cascade they resolve to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tiergate.cli.options import fleet_file_option, format_option

if TYPE_CHECKING:
    from rich.console import Console

    from tiergate.errors import SpecError, SpecIssue
    from tiergate.spec import Fleet, Tier


@click.command("check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@fleet_file_option(
    dest="fleet_options",
    required=False,
    multiple=True,
    help="A file to check, as the other commands name their fleet (repeatable; files may "
    "also be given as arguments).",
)
@format_option()
def command(files: tuple[str, ...], fleet_options: tuple[str, ...], output_format: str) -> None:
    """Validate fleet spec FILES and print the resolved cascade.

    A file holding a KEDA ScaledObject is linted instead: the Prometheus-trigger traps that
    make vLLM scaling silently wrong. Exits 0 when every file is valid and 2 otherwise, after
    reporting every error of every file.
    """
    from tiergate.errors import SpecError
    from tiergate.spec import load_fleet

    fleets = fleet_options + files
    if not fleets:
        raise click.UsageError("give the files to check, as arguments or with -c/--fleet")
    results: list[Fleet | SpecError] = []
    for path in fleets:
        linted = _scaled_object(path)
        if linted is not None:
            results.append(linted)
            continue
        try:
            results.append(load_fleet(path))
        except SpecError as exc:
            results.append(exc)
    if output_format == "json":
        _print_json(fleets, results)
    else:
        _print_tables(fleets, results)
    if any(isinstance(result, SpecError) and result.issues for result in results):
        from tiergate.cli.exits import EXIT_USAGE

        raise SystemExit(EXIT_USAGE)


def _scaled_object(path: str) -> SpecError | None:
    """The lint of a KEDA ScaledObject file (its errors and warnings), or None for a fleet."""
    import os
    from pathlib import Path

    from tiergate.deploy.keda_lint import (
        ScaledObjectLintError,
        is_scaled_object,
        lint_scaled_object,
    )
    from tiergate.errors import SpecError
    from tiergate.spec.yamldoc import parse_yaml

    try:
        doc = parse_yaml(Path(path).read_text(encoding="utf-8"), path, os.environ)
    except (OSError, UnicodeDecodeError, SpecError):
        return None  # the fleet loader reports it, with its own wording
    if not is_scaled_object(doc.data):
        return None
    result = lint_scaled_object(doc)
    return ScaledObjectLintError(result.errors, result.warnings)


def _print_json(fleets: tuple[str, ...], results: list[Fleet | SpecError]) -> None:
    import json

    from tiergate.deploy.keda_lint import ScaledObjectLintError
    from tiergate.errors import SpecError

    documents: list[dict[str, Any]] = []
    for path, result in zip(fleets, results, strict=True):
        if isinstance(result, ScaledObjectLintError):
            documents.append(
                {
                    "file": path,
                    "kind": "ScaledObject",
                    "valid": not result.issues,
                    "errors": [_issue_json(issue) for issue in result.issues],
                    "warnings": [_issue_json(issue) for issue in result.warnings],
                }
            )
        elif isinstance(result, SpecError):
            errors = [_issue_json(issue) for issue in result.issues]
            documents.append({"file": path, "valid": False, "errors": errors})
        else:
            documents.append({"file": path, "valid": True, **fleet_json(result)})
    valid = all(document["valid"] for document in documents)
    click.echo(json.dumps({"valid": valid, "fleets": documents}, indent=2))


def fleet_json(fleet: Fleet) -> dict[str, Any]:
    """The resolved fleet as JSON-ready data (no secrets: only whether an API key is set)."""
    policy = fleet.fallback
    return {
        "defaultModel": fleet.default_model,
        "strategy": "cascade",
        "cascade": [_tier_json(tier) for tier in fleet.cascade],
        "standalone": [_tier_json(tier) for tier in fleet.standalone],
        "fallback": {
            "statusCodes": sorted(policy.status_codes),
            "latencyMs": str(policy.latency_ms) if policy.latency_ms else None,
            "errorRate": str(policy.error_rate) if policy.error_rate else None,
        },
        "warnings": [_issue_json(issue) for issue in fleet.warnings],
    }


def _tier_json(tier: Tier) -> dict[str, Any]:
    health = tier.health
    return {
        "name": tier.name,
        "provider": tier.provider,
        "model": tier.model,
        "baseUrl": tier.base_url,
        "region": tier.region,
        "priority": tier.priority,
        "costPer1kTokens": tier.price_per_1k_tokens,
        "maxTokens": tier.max_tokens,
        "apiKeySet": tier.api_key is not None,
        "healthCheck": None
        if health is None
        else {
            "url": health.url,
            "intervalMs": round(health.interval_s * 1000),
            "timeoutMs": round(health.timeout_s * 1000),
            "unhealthyThreshold": health.unhealthy_threshold,
            "healthyThreshold": health.healthy_threshold,
        },
    }


def _issue_json(issue: SpecIssue) -> dict[str, Any]:
    return {
        "file": issue.file,
        "line": issue.line,
        "column": issue.column,
        "path": issue.path,
        "message": issue.message,
    }


def _print_tables(fleets: tuple[str, ...], results: list[Fleet | SpecError]) -> None:
    from tiergate.cli.console import console
    from tiergate.deploy.keda_lint import ScaledObjectLintError
    from tiergate.errors import SpecError

    out = console()
    err = console(stderr=True)
    for path, result in zip(fleets, results, strict=True):
        if isinstance(result, ScaledObjectLintError) and not result.issues:
            out.print(f"[bold green]{_escape(path)}: valid KEDA ScaledObject[/]", soft_wrap=True)
        if isinstance(result, SpecError) and result.issues:
            count = len(result.issues)
            plural = "s" if count != 1 else ""
            err.print(
                f"[bold red]{_escape(path)}: invalid[/] ({count} error{plural})", soft_wrap=True
            )
            for issue in result.issues:
                err.print(f"  [red]error[/] {_escape(str(issue))}", soft_wrap=True)
        if isinstance(result, ScaledObjectLintError):
            for issue in result.warnings:
                err.print(f"  [yellow]warning[/] {_escape(str(issue))}", soft_wrap=True)
        elif not isinstance(result, SpecError):
            _print_fleet(out, path, result)


def _print_fleet(out: Console, path: str, fleet: Fleet) -> None:
    from rich.table import Table

    out.print(
        f"[bold green]{_escape(path)}: valid[/], default model {fleet.default_model}",
        soft_wrap=True,
    )
    table = Table()
    for header in (
        "#",
        "tier",
        "provider",
        "upstream model",
        "endpoint",
        "$/1k tok",
        "health check",
    ):
        table.add_column(header, overflow="fold")
    for position, tier in enumerate(fleet.cascade, start=1):
        table.add_row(str(position), *_tier_cells(tier))
    for tier in fleet.standalone:
        table.add_row("-", *_tier_cells(tier))
    out.print(table)
    out.print(f"  falls back on: {_escape(describe_fallback(fleet))}")
    for warning in fleet.warnings:
        out.print(f"  [yellow]warning[/] {_escape(str(warning))}", soft_wrap=True)
    out.print()


def describe_fallback(fleet: Fleet) -> str:
    """The fallback policy in one line of words."""
    policy = fleet.fallback
    parts = ["connection errors", "timeouts"]
    if policy.status_codes:
        parts.append("status " + ", ".join(str(code) for code in sorted(policy.status_codes)))
    if policy.latency_ms:
        parts.append(f"no first byte within {policy.latency_ms.limit:g} ms")
    if policy.error_rate:
        parts.append(f"tier skipped while its error rate {policy.error_rate}")
    return "; ".join(parts)


def _tier_cells(tier: Tier) -> list[str]:
    if tier.provider == "bedrock":
        endpoint = f"bedrock {tier.region or '(region from AWS config)'}"
    else:
        endpoint = tier.base_url or ""
    price = "-" if tier.price_per_1k_tokens is None else f"{tier.price_per_1k_tokens:g}"
    health = "passive only"
    if tier.health is not None:
        health = f"{tier.health.url} every {tier.health.interval_s:g} s"
    model = tier.model if tier.max_tokens is None else f"{tier.model} (max {tier.max_tokens} tok)"
    return [tier.name, tier.provider, model, endpoint, price, health]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
