"""``report.html``: the summary's tables and lines and the plots, in one self-contained page
(styles inline, PNGs as ``data:`` URIs; nothing is fetched when it is opened)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from tiergate.sim.outputs.table import (
    TextTable,
    cost_line,
    event_lines,
    heading_line,
    price_lines,
    requests_line,
    run_line,
    slo_line,
    tables,
)
from tiergate.sim.result import SimResult

if TYPE_CHECKING:
    from tiergate.sim.outputs.plots import Plot

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; }
th { background: #f4f4f4; }
td { text-align: right; font-variant-numeric: tabular-nums; }
.name { text-align: left; }
.met { color: #17702f; font-weight: bold; }
.missed { color: #b00020; font-weight: bold; }
pre { background: #f8f8f8; padding: 0.7em; overflow-x: auto; }
figure { margin: 1.5em 0; }
figcaption { color: #555; }
img { max-width: 100%; }
""".strip()


def _table(table: TextTable) -> str:
    def cell(tag: str, index: int, text: str) -> str:
        name = ' class="name"' if index < table.text_columns else ""
        return f"<{tag}{name}>{escape(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(table.headers))
    rows = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>\n"
        for row in table.rows
    )
    return (
        f"<table>\n<caption>{escape(table.title)}</caption>\n<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n{rows}</tbody>\n</table>\n"
    )


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f"<figure>\n<h2>{escape(plot.title)}</h2>\n"
        f'<img alt="{escape(plot.title)}" src="data:image/png;base64,{data}">\n'
        f"<figcaption>{escape(plot.caption)}</figcaption>\n</figure>\n"
    )


def report_html(result: SimResult, plots: Sequence[Plot], *, timing: bool = True) -> str:
    """The page for ``result`` with ``plots`` embedded (``timing=False`` leaves out the wall
    time, the one figure that varies between two runs with the same seed)."""
    verdict = "met" if result.slo.met else "missed"
    lines = [requests_line(result), *(f"price {line}" for line in price_lines(result))]
    if timing:
        lines.append(run_line(result))
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f"<title>tiergate simulate: {escape(result.fleet)}</title>\n",
        f"<style>\n{STYLE}\n</style>\n</head>\n<body>\n",
        f"<h1>tiergate simulate</h1>\n<p>{escape(heading_line(result))}</p>\n",
        f'<p class="{verdict}">{escape(slo_line(result))}</p>\n',
        f"<p><strong>{escape(cost_line(result))}</strong></p>\n",
        *(_table(table) for table in tables(result)),
        "".join(f"<p>{escape(line)}</p>\n" for line in lines),
        *(_figure(plot) for plot in plots),
        "<h2>Events</h2>\n<pre>",
        escape("\n".join(event_lines(result))),
        "</pre>\n</body>\n</html>\n",
    ]
    return "".join(parts)
