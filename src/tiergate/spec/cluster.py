"""The fleet spec's ``cluster`` section: the timing of the cluster's control loops.

Only the simulator reads it (a live cluster has its own settings); the defaults are those of
the components as they ship.
"""

from __future__ import annotations

from pydantic import Field

from tiergate.spec.base import SpecModel


class ClusterSpec(SpecModel):
    """How often the HPA, Prometheus and tiergate's scaler act.

    * ``hpaSyncPeriodS``: kube-controller-manager's ``--horizontal-pod-autoscaler-sync-period``
      (default 15 s): each sync queries the metrics and rescales.
    * ``scrapeIntervalS``: Prometheus' scrape interval for the engines' ``/metrics``. Prometheus'
      own global default is 1 m; ServiceMonitors and PodMonitors of kube-prometheus-stack and
      the vLLM and KEDA examples scrape every 15-30 s: 15 s.
    * ``lookbackDeltaS``: Prometheus' ``--query.lookback-delta`` (5 m): a gauge not scraped for
      this long is absent from instant queries.
    * ``scalerIntervalS``: ``tiergate scale --interval`` (5 s): how often tiergate's scaler
      reads the signals and decides.
    """

    hpa_sync_period_s: float = Field(default=15, gt=0)
    scrape_interval_s: float = Field(default=15, gt=0)
    lookback_delta_s: float = Field(default=300, gt=0)
    scaler_interval_s: float = Field(default=5, ge=0.5, le=3600)
