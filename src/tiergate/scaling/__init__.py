"""LLM-aware autoscaling: signals in, desired replicas out (KEDA and the HPA actuate)."""
