"""Pure placement rules: which offer a launch takes, whether pods fit elsewhere, which pods a
scale-down deletes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from tiergate.sim.nodes.pools import Offer, Pool

LIMIT_REACHED = "limit_reached"
QUOTA_BLOCKED = "quota_blocked"

P = TypeVar("P")


def choose_offer(
    pool: Pool,
    sizes: Sequence[int],
    *,
    pool_nodes: int,
    pool_gpus: int,
    quota_used: Mapping[tuple[str, str], int],
    quota_limits: Mapping[tuple[str, str], int],
) -> tuple[Offer | None, set[tuple[str, str]]]:
    """The offer Karpenter would launch for pending pods of ``sizes`` GPUs, in batch order.

    Karpenter's scheduler packs a batch's pods onto a new NodeClaim while some allowed type
    still fits them all, then launches the first of those types in :func:`offer_order`
    (spot, then the cheapest). A type over the pool's ``limits`` (GPUs, nodes: running and
    launching) or over its EC2 vCPU quota (per capacity type and bucket, running and launching)
    is skipped; when no type fits the whole prefix, fewer pods are packed. Returns the offer (or
    ``None``) and what blocked the skipped ones: ``(kind, text)`` pairs.
    """
    blocked: set[tuple[str, str]] = set()
    largest = max((o.gpus for o in pool.offers), default=0)
    need = 0
    prefix: list[int] = []
    for size in sizes:  # the prefixes that some type can hold
        if need + size > largest:
            break
        need += size
        prefix.append(need)
    for need in reversed(prefix):
        for offer in pool.offers:
            if offer.gpus < need:
                continue
            if pool.limit_nodes is not None and pool_nodes + 1 > pool.limit_nodes:
                blocked.add((LIMIT_REACHED, f"pool {pool.name}: limit of {pool.limit_nodes} nodes"))
                continue
            if pool.limit_gpus is not None and pool_gpus + offer.gpus > pool.limit_gpus:
                blocked.add(
                    (
                        LIMIT_REACHED,
                        f"pool {pool.name}: {offer.instance_type} would pass its limit of "
                        f"{pool.limit_gpus} GPUs ({pool_gpus} in use)",
                    )
                )
                continue
            key = (offer.capacity_type, offer.bucket)
            used, limit = quota_used.get(key, 0), quota_limits.get(key, 0)
            if used + offer.vcpus > limit:
                blocked.add(
                    (
                        QUOTA_BLOCKED,
                        f"pool {pool.name}: {offer.instance_type} {offer.capacity_type} needs "
                        f"{offer.vcpus} vCPU, {offer.capacity_type} {offer.bucket} quota "
                        f"{limit} has {max(limit - used, 0)} left",
                    )
                )
                continue
            return offer, blocked
    return None, blocked


def fit_on(sizes: Sequence[int], free: Sequence[int]) -> list[int] | None:
    """The free GPUs left per node after placing pods of ``sizes`` GPUs on nodes with ``free``
    GPUs (largest pod first, each on the fullest node that holds it: the scheduler's
    most-allocated packing); ``None`` when some pod does not fit."""
    left = list(free)
    for size in sorted(sizes, reverse=True):
        best = -1
        for i, room in enumerate(left):
            if room >= size and (best < 0 or room < left[best]):
                best = i
        if best < 0:
            return None
        left[best] -= size
    return left


def replicaset_victims(
    pods: Sequence[P], count: int, rank: Callable[[P], tuple[int, int, float, float]]
) -> list[P]:
    """The ``count`` pods a ReplicaSet scale-down deletes: lowest ``rank`` first.

    Kubernetes' ``ActivePodsWithRanks`` order: unassigned before assigned, not ready before
    ready, ready for less time before longer, newer before older. ``rank`` gives
    ``(assigned, ready, -ready_since, -created_at)``.
    """
    return sorted(pods, key=rank)[:count]
