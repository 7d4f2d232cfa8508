"""Options that several commands share, spelt the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("debug", "info", "warning", "error")


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
        function = click.option(
            "-c",
            "--fleet",
            "fleet",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help=help + ("  [required]" if required else ""),
        )(function)
        return _merge_alias(function, required=required)

    return decorate


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
