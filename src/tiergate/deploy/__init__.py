"""Kubernetes objects around the fleet: linting of KEDA ScaledObjects' Prometheus triggers."""
