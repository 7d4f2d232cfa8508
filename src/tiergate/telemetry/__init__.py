"""tiergate's own telemetry: Prometheus metrics (and later traces)."""
