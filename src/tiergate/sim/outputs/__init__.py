"""What ``tiergate simulate`` prints and writes: a progress bar, the summary tables,
``summary.json``, ``requests.csv`` and ``report.html`` (matplotlib is imported only when the
report is written)."""

from tiergate.sim.outputs.files import (
    REPORT_HTML,
    REQUESTS_COLUMNS,
    REQUESTS_CSV,
    SUMMARY_JSON,
    RequestsCsv,
    write_report_html,
    write_summary_json,
)
from tiergate.sim.outputs.progress import SimProgress
from tiergate.sim.outputs.table import render_summary

__all__ = [
    "REPORT_HTML",
    "REQUESTS_COLUMNS",
    "REQUESTS_CSV",
    "SUMMARY_JSON",
    "RequestsCsv",
    "SimProgress",
    "render_summary",
    "write_report_html",
    "write_summary_json",
]
