"""The Prometheus metrics of stock vLLM V1, for one emulated replica.

Names, types, labels and buckets follow vLLM's ``PrometheusStatLogger`` (vLLM's
``vllm/v1/metrics/loggers.py``): every series carries ``model_name`` and ``engine``; counters
are declared without ``_total`` (prometheus_client appends it); ``vllm:iteration_tokens_total``
is a histogram whose name already ends in ``_total``.

Latencies are observed on the engine's clock, in *model* seconds: the emulator runs ``speed``
times faster than the performance model says, and its clock runs ``speed`` times faster than
the wall clock, so the histograms read as those of a real engine on the emulated GPU would.

Each replica owns a registry: several replicas live in one process and a restarted replica
starts from zero, as a restarted vLLM process does.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tiergate.emulator.scheduler import EngineRequest, Step, StepResult

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
FINISH_REASONS = ("stop", "length", "abort")
LABELS = ("model_name", "engine")


def buckets_1_2_5(maximum: int) -> list[float]:
    """vLLM's ``build_1_2_5_buckets``: 1, 2, 5, 10, 20, 50, ... up to ``maximum``."""
    buckets: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > maximum:
                return buckets
            buckets.append(float(value))
        exponent += 1


class VllmMetrics:
    """vLLM's engine metrics in a registry of their own, with label children made once."""

    def __init__(self, model_name: str, max_model_len: int, engine: str = "0") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = (model_name, engine)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, LABELS, registry=self.registry).labels(*labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=self.registry).labels(*labels)

        def histogram(name: str, doc: str, buckets: tuple[float, ...] | list[float]) -> Histogram:
            family = Histogram(name, doc, LABELS, buckets=buckets, registry=self.registry)
            return family.labels(*labels)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self.kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*LABELS, "finished_reason"],
            registry=self.registry,
        )
        self.success = {reason: success.labels(*labels, reason) for reason in FINISH_REASONS}
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.itl = histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS,
        )
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.inference_time = histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.prefill_time = histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.decode_time = histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )
        token_buckets = buckets_1_2_5(max_model_len)
        self.request_prompt_tokens = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets
        )
        self.request_generation_tokens = histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            token_buckets,
        )
        self.iteration_tokens = histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            ITERATION_TOKEN_BUCKETS,
        )

    def record(self, step: Step, result: StepResult) -> None:
        """Count one completed engine step: tokens, first tokens, finished requests."""
        self.iteration_tokens.observe(step.num_tokens)
        if step.preempted:
            self.preemptions.inc(len(step.preempted))
        end = result.end
        if result.emitted:
            self.generation_tokens.inc(len(result.emitted))
            itl = self.itl
            for request in result.emitted:
                if request.prev_token_at is not None:
                    itl.observe(end - request.prev_token_at)
        for request in result.first_tokens:
            self.prompt_tokens.inc(request.prompt_tokens)
            self.ttft.observe(end - request.arrival)
        for request in result.finished:
            self._finished(request, end)

    def aborted(self, request: EngineRequest) -> None:
        """Count a request whose client went away before it finished."""
        self.success["abort"].inc()

    def load(self, running: int, waiting: int, kv_usage: float) -> None:
        """Set the three load gauges."""
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def _finished(self, request: EngineRequest, end: float) -> None:
        scheduled = request.scheduled_at if request.scheduled_at is not None else request.arrival
        first = request.first_token_at if request.first_token_at is not None else end
        self.success[request.finish_reason].inc()
        self.e2e.observe(end - request.arrival)
        self.queue_time.observe(scheduled - request.arrival)
        self.inference_time.observe(end - scheduled)
        self.prefill_time.observe(first - scheduled)
        self.decode_time.observe(end - first)
        self.request_prompt_tokens.observe(request.prompt_tokens)
        self.request_generation_tokens.observe(request.num_output)
