"""Signal readers: what the scaling policy sees, read from vLLM engines' metrics.

Two readers build the same :class:`~tiergate.scaling.snapshot.Snapshot`:

- :class:`PrometheusSignals` asks the Prometheus HTTP API (``/api/v1/query``) one PromQL query
  per signal; :class:`SignalQueries` holds them, and ``SignalQueries.for_vllm`` writes the
  defaults for current vLLM metric names, a label selector and a window.
- :class:`ScrapeSignals` scrapes each replica's ``/metrics`` itself (no Prometheus lag) and keeps
  a window of scrapes per replica to turn counters and histogram buckets into rates and
  quantiles.

Missing data is never zero: an unreachable server or replica, an empty result, a NaN quantile
(nothing served in the window) or an infinite one all give ``None`` and a line in
``Snapshot.notes`` saying why.
"""

from tiergate.scaling.signals.base import SignalReader
from tiergate.scaling.signals.histogram import histogram_quantile
from tiergate.scaling.signals.prometheus import PrometheusSignals, parse_query_response
from tiergate.scaling.signals.queries import SignalQueries, label_selector
from tiergate.scaling.signals.scrape import EngineScrape, ScrapeSignals, parse_engine_page

__all__ = [
    "EngineScrape",
    "PrometheusSignals",
    "ScrapeSignals",
    "SignalQueries",
    "SignalReader",
    "histogram_quantile",
    "label_selector",
    "parse_engine_page",
    "parse_query_response",
]
