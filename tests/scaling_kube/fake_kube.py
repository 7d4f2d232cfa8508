"""A fake Kubernetes API server for the scaler's two reads, on 127.0.0.1.

It answers ``GET /apis/apps/v1/namespaces/NS/deployments/NAME`` with an apps/v1 Deployment and
``GET /api/v1/namespaces/NS/pods?labelSelector=...`` with a v1 PodList filtered by the
selector, in the shapes the real API server sends. Errors are ``Status`` objects as the real one
writes them: 401 for a token it does not accept, 403 (as ``system:anonymous``) without one, 403
where RBAC denies, 404 for a missing Deployment, 500 for an internal error, 400 for a selector
it cannot parse.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from tests.loopback import LoopbackServer

USER = "system:serviceaccount:tiergate:tiergate-scaler"

PodState = Literal["ready", "loading", "unscheduled", "evicted"]


def stamp(epoch: float) -> str:
    """An API timestamp (RFC 3339, seconds, ``Z``) of ``epoch``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(
    name: str,
    namespace: str,
    *,
    replicas: int,
    ready: int,
    labels: Mapping[str, str],
    expressions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """An apps/v1 Deployment as ``kubectl get -o json`` shows it (no ``readyReplicas`` at 0)."""
    status: dict[str, Any] = {
        "observedGeneration": 2,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True" if ready else "False",
                "reason": "MinimumReplicasAvailable",
                "lastUpdateTime": "2025-06-15T08:00:00Z",
                "lastTransitionTime": "2025-06-15T08:00:00Z",
            }
        ],
    }
    if ready:
        status["readyReplicas"] = status["availableReplicas"] = ready
    if replicas > ready:
        status["unavailableReplicas"] = replicas - ready
    selector: dict[str, Any] = {"matchLabels": dict(labels)}
    if expressions:
        selector["matchExpressions"] = [dict(rule) for rule in expressions]
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "3f0c2a52-7a4e-4c36-9a51-8b1f4e6a0d11",
            "resourceVersion": "48213",
            "generation": 2,
            "creationTimestamp": "2025-06-15T07:00:00Z",
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.10.0",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": status,
    }


def _condition(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": "2025-06-15T08:00:00Z",
    }
    if reason is not None:
        condition["reason"] = reason
    return condition


def pod(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    created: float,
    state: PodState,
    *,
    deleting: bool = False,
) -> dict[str, Any]:
    """A v1 Pod: ``ready``; ``loading`` (running, readiness probe not yet passing);
    ``unscheduled`` (no GPU node yet: no Ready condition at all); ``evicted`` (Failed)."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**labels, "pod-template-hash": "7d9c8b6f5"},
        "uid": f"uid-{name}",
        "resourceVersion": "48300",
        "creationTimestamp": stamp(created),
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name[:-6]}", "uid": "rs"}
        ],
    }
    if deleting:
        metadata["deletionTimestamp"] = stamp(created + 60)
        metadata["deletionGracePeriodSeconds"] = 30
    spec = {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.10.0"}]}
    status: dict[str, Any]
    if state == "unscheduled":
        status = {
            "phase": "Pending",
            "conditions": [
                {
                    **_condition("PodScheduled", False, "Unschedulable"),
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
            "qosClass": "BestEffort",
        }
    elif state == "evicted":
        status = {
            "phase": "Failed",
            "reason": "Evicted",
            "message": "The node was low on resource: ephemeral-storage.",
            "conditions": [_condition("Ready", False, "PodFailed")],
        }
    else:
        ready = state == "ready"
        reason = None if ready else "ContainersNotReady"
        status = {
            "phase": "Running",
            "conditions": [
                _condition("PodReadyToStartContainers", True),
                _condition("Initialized", True),
                _condition("Ready", ready, reason),
                _condition("ContainersReady", ready, reason),
                _condition("PodScheduled", True),
            ],
            "hostIP": "10.0.1.7",
            "podIP": "10.244.1.23",
            "startTime": stamp(created + 40),
        }
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": spec, "status": status}


def status_object(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """The API's ``Status`` body of an error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


@dataclass
class Seen:
    """One request the fake answered."""

    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class FakeKubernetes(LoopbackServer):
    """Deployments by (namespace, name) and pods by namespace; ``token`` is the bearer token
    it accepts (``None``: any request, as behind ``kubectl proxy``).

    ``forbidden`` (``"deployments"``, ``"pods"``) are what RBAC denies; ``broken`` makes those
    answer 500; ``stalled`` those never answer; ``garbled`` those answer 200 with an HTML page
    (a proxy's).
    """

    token: str | None = "token-one"
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    garbled: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", self._deployment
        )
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
        return app

    async def _deployment(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        refused = await self._refused(request, "deployments", namespace, name)
        if refused is not None:
            return refused
        found = self.deployments.get((namespace, name))
        if found is None:
            body = status_object(
                404,
                "NotFound",
                f'deployments.apps "{name}" not found',
                name=name,
                group="apps",
                kind="deployments",
            )
            return web.json_response(body, status=404)
        return web.json_response(found)

    async def _pods(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        refused = await self._refused(request, "pods", namespace, None)
        if refused is not None:
            return refused
        text = request.query.get("labelSelector", "")
        try:
            wanted = _parse_selector(text)
        except ValueError as exc:
            body = status_object(400, "BadRequest", f"unable to parse requirement: {exc}")
            return web.json_response(body, status=400)
        items = [
            item
            for item in self.pods.get(namespace, [])
            if all(rule.matches(item["metadata"].get("labels", {})) for rule in wanted)
        ]
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "48321"},
                "items": items,
            }
        )

    async def _refused(
        self, request: web.Request, resource: str, namespace: str, name: str | None
    ) -> web.Response | None:
        header = request.headers.get("Authorization")
        self.seen.append(Seen(request.path, dict(request.query), header))
        user = USER
        if self.token is not None:
            if header is None:
                user = "system:anonymous"
            elif header != f"Bearer {self.token}":
                body = status_object(401, "Unauthorized", "Unauthorized")
                return web.json_response(body, status=401)
        if resource in self.stalled:
            await asyncio.Event().wait()  # cancelled when the client gives up
        if resource in self.garbled:
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", status=200)
        if resource in self.broken:
            body = status_object(
                500,
                "InternalError",
                "Internal error occurred: etcdserver: request timed out",
                causes=[{"message": "etcdserver: request timed out"}],
            )
            return web.json_response(body, status=500)
        if resource in self.forbidden or user == "system:anonymous":
            verb, group = ("get", "apps") if resource == "deployments" else ("list", "")
            what = f'deployments.apps "{name}"' if name else resource
            message = (
                f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in '
                f'API group "{group}" in the namespace "{namespace}"'
            )
            details = {"name": name, "group": group, "kind": resource} if name else {}
            body = status_object(403, "Forbidden", message, **details)
            return web.json_response(body, status=403)
        return None

    @property
    def last_authorization(self) -> str | None:
        return self.seen[-1].authorization


_TERM = re.compile(
    r"^(?:(?P<key>[\w./-]+)=(?P<value>[\w.-]*)"
    r"|(?P<setkey>[\w./-]+) (?P<op>in|notin) \((?P<values>[\w.,-]*)\)"
    r"|!(?P<absent>[\w./-]+)"
    r"|(?P<exists>[\w./-]+))$"
)


@dataclass(frozen=True)
class _Rule:
    key: str
    values: frozenset[str] | None  # None: only whether the label exists
    inside: bool  # "=", "in", exists: True; "notin", "!": False

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.values is None:
            return (self.key in labels) == self.inside
        return (labels.get(self.key) in self.values) == self.inside


def _parse_selector(text: str) -> list[_Rule]:
    """Label selector terms: ``k=v``, ``k in (a,b)``, ``k notin (a)``, ``k``, ``!k``."""
    terms: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    if text:
        terms.append(text[start:])
    rules = []
    for term in terms:
        match = _TERM.match(term)
        if match is None:
            raise ValueError(repr(term))
        if match["key"]:
            rules.append(_Rule(match["key"], frozenset({match["value"]}), True))
        elif match["setkey"]:
            values = frozenset(match["values"].split(","))
            rules.append(_Rule(match["setkey"], values, match["op"] == "in"))
        elif match["absent"]:
            rules.append(_Rule(match["absent"], None, False))
        else:
            rules.append(_Rule(match["exists"], None, True))
    return rules
