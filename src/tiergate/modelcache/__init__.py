"""The model-weight fetcher behind ``tiergate fetch``: plan, resumable verified transfer,
atomic completion and coordination of several fetchers (an init container's job)."""
