"""The rich consoles every command prints through.

Off a terminal (a pipe, a file, CI logs) rich assumes 80 columns and folds or cuts cells to
fit; there a table's cells must stay whole (key ids, tier names, costs are read back by
scripts and people alike), so such a console is as wide as the widest line. Emoji codes are
off everywhere: ``file.yaml:100:`` must not print as a 💯.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

# Wide enough for any row we print; rich lays a table out no wider than its content needs.
UNBOUNDED_WIDTH = 100_000


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr): no markup highlighting, no emoji, and off a
    terminal no wrapping or truncation of table cells."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, emoji=False)
    if out.is_terminal:
        return out
    return Console(stderr=stderr, highlight=False, emoji=False, width=UNBOUNDED_WIDTH)


def is_terminal() -> bool:
    """Whether stdout is a terminal (live views redraw there; elsewhere they print lines)."""
    return console().is_terminal
