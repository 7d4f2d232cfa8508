"""Kubernetes objects around the fleet: rendering and linting (KEDA, Karpenter, Deployments)."""
