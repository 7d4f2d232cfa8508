"""The ``tiergate`` click group.

Commands are registered by module path and imported only when run (or listed by ``--help``),
so that starting the CLI costs little; command modules keep heavy imports inside functions.
"""

from __future__ import annotations

import importlib

import click

from tiergate._version import __version__

# name -> module defining ``command``; one module per command.
COMMANDS = {
    "check": "tiergate.cli.check",
    "demo": "tiergate.cli.demo",
    "emulate": "tiergate.cli.emulate",
    "fetch": "tiergate.cli.fetch",
    "keys": "tiergate.cli.keys",
    "report": "tiergate.cli.report",
    "scale": "tiergate.cli.scale",
    "serve": "tiergate.cli.serve",
    "simulate": "tiergate.cli.simulate",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = importlib.import_module(module).command
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tiergate")
def cli() -> None:
    """tiergate: cost-efficient LLM serving across on-prem GPUs, cloud GPUs and managed APIs.

    One fleet spec drives every command.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tiergate")
