"""The cluster model in virtual time: launches, quotas, limits, weights, start-up phases, spot
notices and consolidation, each against times worked out by hand.

Every pool here has fixed phases (launch 100 s, image pull 300 s or 5 s cached, engine 30 s)
and weights of 35 GB on NVMe (3.5 GB/s: 10 s), so a pod created at t=0 that needs a new node is
placed by the provisioning pass at t=1 (Karpenter's 1 s batch) and is ready at
1 + 100 + 300 + 10 + 30 = 441.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from tiergate.scaling.snapshot import ReplicaCount
from tiergate.sim.loop import EventLoop
from tiergate.sim.nodes import Cluster, Pod, PodSpec
from tiergate.spec.nodepools import NodeSections

FIXED = {"launchS": 100, "imagePullS": 300, "imagePullCachedS": 5, "engineStartS": 30}
READY_ON_NEW_NODE = 441.0
MONDAY = datetime(2026, 12, 7, tzinfo=UTC)


class Recorder:
    """What the engines would hear: (time, pod id) when ready, (time, pod id, grace) stopping."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.ready: list[tuple[float, str]] = []
        self.stopping: list[tuple[float, str, float]] = []

    def pod_ready(self, pod: Pod) -> None:
        self.ready.append((self.loop.now, pod.id))

    def pod_stopping(self, pod: Pod, grace_s: float) -> None:
        self.stopping.append((self.loop.now, pod.id, grace_s))


def pool_spec(name: str, types: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "instanceTypes": types, "startup": FIXED, **fields}


def make(
    *pools: dict[str, Any], quotas: dict[str, int] | None = None, seed: int = 1
) -> tuple[EventLoop, Cluster, Recorder]:
    loop = EventLoop()
    recorder = Recorder(loop)
    sections = NodeSections.model_validate({"nodePools": list(pools), "quotas": quotas or {}})
    cluster = Cluster.from_spec(loop, sections, random.Random(seed), recorder, utc_start=MONDAY)
    return loop, cluster, recorder


def pod(deployment: str, gpus: int, *pools: str) -> PodSpec:
    return PodSpec(deployment, gpus, 35e9, "nvme", pools)


def kinds(cluster: Cluster, kind: str) -> list[tuple[float, str]]:
    return [(e.t, e.text) for e in cluster.events if e.kind == kind]


def test_phases_of_a_pod_on_a_new_node_and_packing_two_on_it() -> None:
    loop, cluster, recorder = make(pool_spec("gpu", ["p5.48xlarge"]))
    cluster.set_replicas(pod("llama", 4, "gpu"), 2)
    assert cluster.replicas("llama") == ReplicaCount(0, 2, ())  # not placed yet: no ready time
    loop.run(until=2)
    # Both TP-4 pods share one 8-GPU node and one image pull: ready at 441.
    assert cluster.replicas("llama") == ReplicaCount(0, 2, (441.0, 441.0))
    assert len(kinds(cluster, "launch")) == 1
    loop.run(until=500)
    assert [t for t, _ in recorder.ready] == [READY_ON_NEW_NODE, READY_ON_NEW_NODE]
    assert kinds(cluster, "ready") == [(101.0, "gpu: node-1")]


def test_a_later_pod_on_the_same_node_pulls_from_the_cache() -> None:
    loop, cluster, recorder = make(pool_spec("gpu", ["p5.48xlarge"]))
    spec = pod("llama", 4, "gpu")
    cluster.set_replicas(spec, 1)
    loop.run(until=1000)
    cluster.set_replicas(spec, 2)
    loop.run(until=2000)
    # Bound at once to the free half of the Ready node: 5 s cached image + 10 s + 30 s.
    assert recorder.ready[-1][0] == 1000 + 5 + 10 + 30


def test_cheapest_type_that_fits_and_a_batch_packed_onto_a_bigger_one() -> None:
    quotas = {"onDemandG": 1000}
    loop, cluster, _ = make(pool_spec("l40s", ["g6e.12xlarge", "g6e.48xlarge"]), quotas=quotas)
    # One TP-2 pod: the 4-GPU g6e.12xlarge ($10.49/h) is the cheapest that fits.
    cluster.set_replicas(pod("small", 2, "l40s"), 1)
    loop.run(until=2)
    assert [r.instance_type for r in cluster.node_records()] == ["g6e.12xlarge"]
    # Four more TP-2 pods in one batch: the first binds to the free half of the g6e.12xlarge;
    # the other three (6 GPUs) fit only a g6e.48xlarge, and Karpenter packs them onto one.
    cluster.set_replicas(pod("small", 2, "l40s"), 5)
    loop.run(until=4)
    assert [r.instance_type for r in cluster.node_records()] == ["g6e.12xlarge", "g6e.48xlarge"]


def test_vcpu_quotas_block_a_launch_until_capacity_frees() -> None:
    # Two pools of p5.48xlarge share the account's On-Demand P quota (384 vCPU).
    loop, cluster, _ = make(pool_spec("x", ["p5.48xlarge"]), pool_spec("y", ["p5.48xlarge"]))
    cluster.set_replicas(pod("a", 8, "x"), 2)
    cluster.set_replicas(pod("b", 8, "y"), 1)
    loop.run(until=1000)
    # Two p5.48xlarge use 2 * 192 = 384 vCPU, the whole quota: b stays pending.
    assert len(cluster.node_records()) == 2
    assert cluster.replicas("b") == ReplicaCount(0, 1, ())
    blocked = kinds(cluster, "quota_blocked")
    assert blocked == [
        (1.0, "pool y: p5.48xlarge on-demand needs 192 vCPU, on-demand P quota 384 has 0 left")
    ]
    # a scales to 1 at 1005: its pod leaves at 1035, the node is empty and consolidated in the
    # pass at 1040 (consolidateAfter 0s), which frees 192 vCPU: b's node launches in that pass.
    loop.run(until=1005)
    cluster.set_replicas(pod("a", 8, "x"), 1)
    loop.run(until=1100)
    assert [t for t, _ in kinds(cluster, "launch")] == [1.0, 1.0, 1040.0]
    assert len(kinds(cluster, "quota_blocked")) == 1  # said once, not at every retry


def test_a_pending_pod_takes_the_room_a_leaving_pod_frees() -> None:
    loop, cluster, recorder = make(pool_spec("gpu", ["p5.48xlarge"]))
    cluster.set_replicas(pod("a", 8, "gpu"), 2)
    cluster.set_replicas(pod("b", 8, "gpu"), 1)  # over the quota, pending
    loop.run(until=1005)
    cluster.set_replicas(pod("a", 8, "gpu"), 1)
    loop.run(until=2000)
    # a's pod leaves at 1035 and b binds to its node in the pass 1 s later, without a launch;
    # b's image is not on that node: 1036 + 300 + 10 + 30.
    assert len(kinds(cluster, "launch")) == 2
    assert recorder.ready[-1] == (1376.0, "b-1")


def test_a_g6e_48xlarge_needs_more_than_the_default_g_quota() -> None:
    loop, cluster, _ = make(pool_spec("l40s", ["g6e.48xlarge"]))
    cluster.set_replicas(pod("big", 8, "l40s"), 1)
    loop.run(until=100)
    assert cluster.node_records() == []
    (event,) = kinds(cluster, "quota_blocked")
    assert "needs 192 vCPU, on-demand G quota 64 has 64 left" in event[1]


def test_pool_weights_and_limits() -> None:
    loop, cluster, _ = make(
        pool_spec("spare", ["p5.48xlarge"]),  # no weight: after the weighted ones
        pool_spec("cheap", ["g6e.12xlarge"], weight=10),
        pool_spec("first", ["p5.48xlarge"], weight=50, limits={"gpus": 8}),
        quotas={"onDemandP": 10_000, "onDemandG": 10_000},
    )
    spec = pod("m", 8, "spare", "cheap", "first")
    cluster.set_replicas(spec, 2)
    loop.run(until=10)
    # The first pod goes to the weight-50 pool; the second would pass its 8-GPU limit, the
    # weight-10 pool has no type with 8 GPUs, so it lands in the pool without weight.
    assert [r.pool for r in cluster.node_records()] == ["first", "spare"]
    assert kinds(cluster, "limit_reached") == [
        (1.0, "pool first: p5.48xlarge would pass its limit of 8 GPUs (8 in use)")
    ]


def test_spot_first_then_on_demand_when_the_spot_quota_is_spent() -> None:
    loop, cluster, _ = make(
        pool_spec("gpu", ["p5.48xlarge"], capacityTypes=["on-demand", "spot"]),
        quotas={"spotP": 192},
    )
    cluster.set_replicas(pod("m", 8, "gpu"), 2)
    loop.run(until=10)
    # Spot at the catalog's $14/h first; the second spot node would pass the 192-vCPU spot
    # quota, so it falls back to on-demand at $55.04/h.
    records = [(r.capacity_type, r.usd_per_hour) for r in cluster.node_records()]
    assert records == [("spot", 14.0), ("on-demand", 55.04)]


def test_spot_notice_at_a_seeded_time_replacement_pending_at_once() -> None:
    # Rate 1 per instance-hour; with seed 7 (and fixed phases, which draw nothing) the first
    # draw is random.Random(7).expovariate(1 / 3600) = 1408.73 s after the launch at t=1.
    notice_at = 1 + random.Random(7).expovariate(1 / 3600)
    loop, cluster, recorder = make(
        pool_spec(
            "spot", ["p5.48xlarge"], capacityTypes=["spot"], spotInterruptionsPerInstanceHour=1
        ),
        seed=7,
    )
    cluster.set_replicas(pod("m", 8, "spot"), 1)
    loop.run(until=notice_at)
    (stopping,) = recorder.stopping
    assert stopping[0] == pytest.approx(notice_at)
    assert stopping[2] == 120.0
    # The replacement is pending at once; the node is still billed, until notice + 120 s.
    assert cluster.replicas("m") == ReplicaCount(0, 1, ())
    assert cluster.node_records()[0].terminated_at is None
    loop.run(until=notice_at + 121)
    first = cluster.node_records()[0]
    assert first.terminated_at == pytest.approx(notice_at + 120)
    assert first.interrupted_by_provider
    # The replacement node launched in the first pass after the notice (the 1 s batch or the
    # 10 s periodic pass, whichever comes first: here the pass at 1410).
    assert notice_at < kinds(cluster, "launch")[1][0] <= notice_at + 1
    assert cluster.replicas("m").pending == 1


def test_interrupt_sends_the_notice_now() -> None:
    loop, cluster, recorder = make(
        pool_spec(
            "spot", ["p5.48xlarge"], capacityTypes=["spot"], spotInterruptionsPerInstanceHour=0
        ),
        quotas={"spotP": 10_000},
    )
    cluster.set_replicas(pod("m", 8, "spot"), 3)
    loop.run(until=500)
    assert cluster.interrupt("spot", 2) == 2
    assert [(t, grace) for t, _, grace in recorder.stopping] == [(500.0, 120.0), (500.0, 120.0)]
    assert len(kinds(cluster, "spot_notice")) == 2


def test_empty_node_deleted_after_consolidate_after_at_the_next_pass() -> None:
    loop, cluster, recorder = make(
        pool_spec(
            "gpu",
            ["p5.48xlarge"],
            disruption={"consolidationPolicy": "WhenEmpty", "consolidateAfter": "30s"},
        )
    )
    cluster.set_replicas(pod("m", 8, "gpu"), 1)
    loop.run(until=1003)
    cluster.set_replicas(pod("m", 8, "gpu"), 0)
    # The pod stops with a 30 s grace: empty from 1033; consolidateAfter 30 s makes the node
    # eligible at 1063, and the disruption pass (every 10 s) deletes it at 1070, not before.
    assert recorder.stopping == [(1003.0, "m-1", 30.0)]
    loop.run(until=1069)
    assert cluster.node_records()[0].terminated_at is None
    loop.run(until=1100)
    assert cluster.node_records()[0].terminated_at == 1070.0
    assert kinds(cluster, "consolidated") == [(1070.0, "gpu: node-1 empty")]


def test_never_disables_consolidation_and_on_prem_nodes_stay() -> None:
    loop, cluster, _ = make(
        pool_spec("gpu", ["p5.48xlarge"], disruption={"consolidateAfter": "Never"}),
        {
            "name": "dc",
            "startup": FIXED,
            "onPrem": {
                "nodes": 1,
                "gpu": "H100",
                "gpusPerNode": 8,
                "costs": {"purchaseUsdPerNode": 350400, "powerKwPerNode": 10, "usdPerKwh": 0.1},
            },
        },
    )
    cluster.set_replicas(pod("m", 8, "gpu"), 1)
    loop.run(until=600)
    cluster.set_replicas(pod("m", 8, "gpu"), 0)
    loop.run(until=5000)
    records = {r.pool: r for r in cluster.node_records()}
    assert records["gpu"].terminated_at is None
    assert records["dc"].capacity_type == "on-prem"
    assert (records["dc"].launched_at, records["dc"].terminated_at) == (0.0, None)
    # 350,400 / (4 * 8,760) + 10 kW * 0.1 $/kWh = 11 $/h.
    assert records["dc"].usd_per_hour == pytest.approx(11.0)


def test_on_prem_pod_pays_only_image_weights_and_engine() -> None:
    loop, cluster, recorder = make(
        {
            "name": "dc",
            "startup": FIXED,
            "onPrem": {
                "nodes": 1,
                "gpu": "H100",
                "gpusPerNode": 8,
                "costs": {"purchaseUsdPerNode": 1, "powerKwPerNode": 0, "usdPerKwh": 0},
            },
        }
    )
    # Weights on S3 in the pod spec; the on-prem node loads from its NVMe: 300 + 10 + 30.
    cluster.set_replicas(PodSpec("m", 8, 35e9, "s3", ("dc",)), 1)
    loop.run()
    assert recorder.ready == [(340.0, "m-1")]


def test_two_half_full_nodes_become_one() -> None:
    loop, cluster, recorder = make(pool_spec("gpu", ["p5.48xlarge"]))
    # Two deployments of one vLLM image, each of two TP-4 pods.
    a = PodSpec("a", 4, 35e9, "nvme", ("gpu",), image="vllm")
    b = PodSpec("b", 4, 35e9, "nvme", ("gpu",), image="vllm")
    cluster.set_replicas(a, 2)
    cluster.set_replicas(b, 2)
    loop.run(until=1005)
    assert len(cluster.nodes("gpu")) == 2  # a's pods on one node, b's on the other
    cluster.set_replicas(a, 1)
    cluster.set_replicas(b, 1)
    # The stopped pods leave at 1035; at the pass at 1040 each node is half full and a's pod
    # fits the other node's free half: a's node is drained (30 s grace) and deleted at 1070.
    loop.run(until=1200)
    assert [(t, grace) for t, _, grace in recorder.stopping[2:]] == [(1040.0, 30.0)]
    assert [t for t, _ in kinds(cluster, "consolidated")] == [1040.0]
    (node,) = cluster.nodes("gpu")
    assert sorted(p.spec.deployment for p in node.pods) == ["a", "b"]
    terminated = [r.terminated_at for r in cluster.node_records() if r.terminated_at is not None]
    assert terminated == [1070.0]
    # a's replacement starts on the other node from the cached image: 1040 + 5 + 10 + 30.
    assert recorder.ready[-1][0] == 1085.0


def test_budgets_limit_consolidation_per_pass() -> None:
    disruption = {"consolidateAfter": "0s", "budgets": [{"nodes": "50%"}]}
    loop, cluster, _ = make(
        pool_spec("gpu", ["p5.48xlarge"], disruption=disruption), quotas={"onDemandP": 10_000}
    )
    cluster.set_replicas(pod("m", 8, "gpu"), 4)
    loop.run(until=1005)
    cluster.set_replicas(pod("m", 8, "gpu"), 0)
    loop.run(until=2000)
    # Empty from 1035. Pass 1040: roundup(4 * 50%) = 2 go; 1050: roundup(2 * 50%) = 1;
    # 1060: roundup(1 * 50%) = 1.
    terminated = sorted(r.terminated_at or 0 for r in cluster.node_records())
    assert terminated == [1040.0, 1040.0, 1050.0, 1060.0]


def test_scale_down_deletes_in_replicaset_order() -> None:
    loop, cluster, recorder = make(pool_spec("gpu", ["p5.48xlarge"], limits={"nodes": 2}))
    spec = pod("m", 8, "gpu")
    cluster.set_replicas(spec, 1)
    loop.run(until=1000)
    cluster.set_replicas(spec, 3)  # one starts on a new node, the third is over the node limit
    loop.run(until=1010)
    states = [(p.id, p.state) for p in cluster.pods("m")]
    assert states == [("m-1", "ready"), ("m-2", "starting"), ("m-3", "pending")]
    assert kinds(cluster, "limit_reached") == [(1001.0, "pool gpu: limit of 2 nodes")]
    cluster.set_replicas(spec, 2)  # the unscheduled pod goes first
    assert [p.id for p in cluster.pods("m")] == ["m-1", "m-2"]
    cluster.set_replicas(spec, 1)  # then the one not ready; neither is told to stop serving
    assert [p.id for p in cluster.pods("m")] == ["m-1"]
    assert recorder.stopping == []
    cluster.set_replicas(spec, 0)  # the ready one last, with its grace
    assert recorder.stopping == [(1010.0, "m-1", 30.0)]


def test_unknown_pools_and_storage_are_refused() -> None:
    _, cluster, _ = make(pool_spec("gpu", ["p5.48xlarge"]))
    with pytest.raises(ValueError, match=r"unknown pools.*known: gpu"):
        cluster.set_replicas(pod("m", 8, "elsewhere"), 1)
    with pytest.raises(ValueError, match="unknown storage 'tape'"):
        cluster.set_replicas(PodSpec("m", 8, 1e9, "tape", ("gpu",)), 1)


def test_same_seed_same_history() -> None:
    def history(seed: int) -> list[tuple[float, str, str]]:
        spec = pool_spec(
            "spot", ["p5.48xlarge"], capacityTypes=["spot"], spotInterruptionsPerInstanceHour=2
        )
        spec["startup"] = {
            "launchS": {"uniform": [80, 120]},
            "imagePullS": {"lognormal": {"median": 300, "p95": 360}},
        }
        loop, cluster, _ = make(spec, quotas={"spotP": 10_000}, seed=seed)
        cluster.set_replicas(pod("m", 8, "spot"), 3)
        loop.run(until=4 * 3600)
        return [tuple(e) for e in cluster.events]

    assert history(11) == history(11)
    assert history(11) != history(12)


def test_a_spot_storm_raises_the_rate_from_now() -> None:
    spec = pool_spec("spot", ["p5.48xlarge"], capacityTypes=["spot"])
    spec["spotInterruptionsPerInstanceHour"] = 0
    loop, cluster, _ = make(spec, seed=3)
    cluster.set_replicas(pod("m", 8, "spot"), 1)
    loop.run(until=1000)
    assert cluster.node_counts() == {"spot": {"launching": 0, "ready": 1, "deleting": 0}}
    # From 1000 at 3,600 per instance-hour (one a second on average): the next draw of the
    # seeded rng, random.Random(3) after nothing else drew, is expovariate(1) = 0.978 s.
    cluster.set_interruption_rate("spot", 3600)
    loop.run(until=1001)
    assert kinds(cluster, "spot_notice")[0][0] == pytest.approx(
        1000 + random.Random(3).expovariate(1)
    )
    assert cluster.node_counts()["spot"]["deleting"] == 1
