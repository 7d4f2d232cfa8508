"""Options that several commands share, spelt the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("debug", "info", "warning", "error")


def fleet_file_option(
    *,
    help: str,
    dest: str = "fleet_path",
    required: bool = True,
    multiple: bool = False,
    exists: bool = False,
    path_type: type | None = None,
) -> Callable[[F], F]:
    """``-c/--fleet FILE``: the option every command that reads a fleet spec names it by."""
    return click.option(
        "-c",
        "--fleet",
        dest,
        required=required,
        multiple=multiple,
        default=None,
        metavar="FILE",
        type=click.Path(dir_okay=False, exists=exists, path_type=path_type),
        help=help,
    )


def fleet_option(*, help: str, required: bool = True) -> Callable[[F], F]:
    """``-c/--fleet FILE``, passed as ``fleet``; ``--config`` stays as a hidden alias, so
    that scripts written for the older name keep working."""

    def decorate(function: F) -> F:
        function = click.option(
            "--config",
            "config_alias",
            hidden=True,
            type=click.Path(dir_okay=False, path_type=Path),
        )(function)
        option = fleet_file_option(
            help=help + ("  [required]" if required else ""),
            dest="fleet",
            required=False,  # checked once the alias is folded in
            path_type=Path,
        )
        return _merge_alias(option(function), required=required)

    return decorate


def format_option(
    help: str = "table for people, json for machines.",
    *,
    choices: tuple[str, ...] = ("table", "json"),
) -> Callable[[F], F]:
    """``--format table|json`` (passed as ``output_format``), defaulting to ``table``."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help=help,
    )


def _merge_alias(function: F, *, required: bool) -> F:
    """Fold ``config_alias`` into ``fleet`` before the command runs."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        alias = kwargs.pop("config_alias", None)
        if kwargs.get("fleet") is None:
            kwargs["fleet"] = alias
        if required and kwargs["fleet"] is None:
            raise click.UsageError("Missing option '-c' / '--fleet'.")
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


log_level_option = click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(LOG_LEVELS),
    help="Log lines below this level are dropped.",
)
