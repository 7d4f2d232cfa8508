"""Ready and pending replicas from the Kubernetes API: the scaler's replica source in a cluster.

Two reads per deployment and round: the Deployment (``spec.replicas`` asked for,
``status.readyReplicas`` ready) and its pods, by the Deployment's selector. Pods that are not
Ready, not terminating and not finished are the pending ones; each is expected ready at its
``creationTimestamp`` plus the entry's cold start. The scaler's service account needs ``get``
on ``deployments.apps`` and ``list`` on ``pods`` in each namespace (docs/keda.md).

Nothing here raises into the controller. A Deployment that cannot be read answers ``None`` (the
controller then counts the replicas its signals see); pods that cannot be listed leave the
counts, with a note that the ready times are unknown. Either logs one line when it starts
failing and one when it works again.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tiergate.scaling.replicas import ReplicaSource
from tiergate.scaling.snapshot import ReplicaCount
from tiergate.spec.scaling import ScalingEntry

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RBAC = "get on deployments.apps and list on pods"
_FINISHED = frozenset({"Succeeded", "Failed"})  # completed or evicted: never becoming ready


@dataclass(frozen=True, slots=True)
class ClusterAccess:
    """How to reach the API server; unset fields take the in-cluster defaults.

    In a cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, checked with the
    service account's ``ca.crt``. The service account's token is sent wherever its file exists
    (none is sent without one, as through ``kubectl proxy``). A given ``api_server`` is checked
    with ``ca_file``, or the system's trusted CAs.
    """

    api_server: str | None = None
    token_file: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class DeploymentRef:
    """The Deployment behind one scaling entry, and how long its replicas take to get ready."""

    name: str
    namespace: str | None = None  # None: the service account's namespace, else "default"
    cold_start_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _Failure:
    why: str  # for operators' logs and notes: never holds the token


class _Health:
    """One log line when reads of ``what`` start failing, one when they work again."""

    def __init__(self, what: str, meanwhile: str) -> None:
        self._what = what
        self._meanwhile = meanwhile
        self._failures = 0

    def failed(self, failure: _Failure) -> None:
        if self._failures == 0:
            log.error(
                "kubernetes: cannot read %s (%s): %s", self._what, self._meanwhile, failure.why
            )
        self._failures += 1

    def succeeded(self) -> None:
        if self._failures:
            log.warning(
                "kubernetes: %s read again after %d failed reads", self._what, self._failures
            )
            self._failures = 0


class _Token:
    """The bearer token, read again whenever its file changes: bound tokens rotate."""

    def __init__(self, path: Path, *, required: bool) -> None:
        self.path = path
        self._required = required
        self._seen: tuple[int, int, int] | None = None
        self._token: str | None = None

    def get(self, *, fresh: bool = False) -> str | _Failure | None:
        """The token (``None``: none to send); ``fresh`` reads the file even if unchanged.

        Read on the event loop: a stat, and a read of a few hundred bytes when it changed, of a
        file that in a cluster lives on the pod's in-memory projected volume."""
        try:
            stat = self.path.stat()
            # The kubelet swaps a symlink to a new file: the inode changes with the token.
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if fresh or seen != self._seen:
                self._token = self.path.read_text().strip() or None
                self._seen = seen
        except FileNotFoundError as exc:
            if self._required:
                return _Failure(f"the token file {self.path} is absent: {exc.strerror}")
            self._token = self._seen = None
        except OSError as exc:
            return _Failure(f"cannot read the token file {self.path}: {exc.strerror or exc}")
        return self._token


class _Api:
    """GETs on one API server with the scaler's credentials; every failure is a :class:`_Failure`
    saying what an operator should fix."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        access: ClusterAccess,
        *,
        env: Mapping[str, str],
        secrets: Path,
        timeout_s: float,
    ) -> None:
        self._session = session
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        host = env.get("KUBERNETES_SERVICE_HOST")
        self.base: str | None = None
        self._ca: Path | None = Path(access.ca_file) if access.ca_file else None
        if access.api_server is not None:
            self.base = access.api_server.rstrip("/")
        elif host:
            host = f"[{host}]" if ":" in host else host  # an IPv6 address
            self.base = f"https://{host}:{env.get('KUBERNETES_SERVICE_PORT', '443')}"
            self._ca = self._ca or secrets / "ca.crt"
        token = Path(access.token_file) if access.token_file else secrets / "token"
        self._token = _Token(token, required=access.token_file is not None)
        self._tls: ssl.SSLContext | None = None

    async def get(
        self, path: str, params: Mapping[str, str], *, what: str, verb: str, namespace: str
    ) -> dict[str, Any] | _Failure:
        """The JSON object at ``path``; ``what``, ``verb`` and ``namespace`` name the request
        in the answers to 403 (which RBAC rule is missing) and 404."""
        if self.base is None:
            return _Failure(
                "not in a cluster (KUBERNETES_SERVICE_HOST is unset) and no apiServer is given"
            )
        tls = self._context()
        if isinstance(tls, _Failure):
            return tls
        token = self._token.get()
        if isinstance(token, _Failure):
            return token
        answer = await self._send(path, params, tls, token)
        if isinstance(answer, tuple) and answer[0] == 401:
            # A rotated token can keep the size and the mtime tick of the old one.
            fresh = self._token.get(fresh=True)
            if isinstance(fresh, _Failure):
                return fresh
            if fresh != token:
                token = fresh
                answer = await self._send(path, params, tls, token)
        if isinstance(answer, _Failure):
            return answer
        status, body = answer
        if status == 200:
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                payload = None
            if isinstance(payload, dict):
                return payload
            return _Failure(f"HTTP 200 from {self.base} with a body that is not a JSON object")
        message = _status_message(body)
        said = f"; the API server said: {message}" if message else ""
        if status == 401:
            if token is None:
                return _Failure(f"unauthorized: no token sent ({self._token.path} is absent){said}")
            return _Failure(
                f"unauthorized: the API server rejected the token from {self._token.path} "
                f"(expired, or of another cluster){said}"
            )
        if status == 403:
            return _Failure(
                f"forbidden: RBAC does not let the scaler {verb} in namespace {namespace}; its "
                f"service account needs {RBAC} there (a Role and a RoleBinding){said}"
            )
        if status == 404:
            return _Failure(f"{what} not found in namespace {namespace}")
        return _Failure(f"HTTP {status} from {self.base}{said}")

    def _context(self) -> ssl.SSLContext | bool | _Failure:
        if self._ca is None:
            return True  # the system's trusted CAs (or plain http)
        if self._tls is None:
            try:
                self._tls = ssl.create_default_context(cafile=str(self._ca))
            except OSError as exc:  # ssl.SSLError is one
                return _Failure(f"cannot use the CA file {self._ca}: {exc}")
        return self._tls

    async def _send(
        self,
        path: str,
        params: Mapping[str, str],
        tls: ssl.SSLContext | bool,
        token: str | None,
    ) -> tuple[int, bytes] | _Failure:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.get(
                f"{self.base}{path}",
                params=params,
                headers=headers,
                ssl=tls,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            return _Failure(f"no answer from {self.base} within {self._timeout_s:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return _Failure(f"cannot reach {self.base}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class _Watched:
    ref: DeploymentRef
    namespace: str
    deployment: _Health
    pods: _Health


class KubernetesReplicas:
    """Ready and pending replicas of ``deployments`` (a scaling entry's name -> its Deployment)
    on one API server, read through ``session`` (the caller's; not closed here).

    ``wall`` is the clock of the API's timestamps (epoch seconds); the caller's ``now`` may be
    another (``time.monotonic``): ready times are moved onto it. Each request may take
    ``timeout_s``. ``env`` and ``secrets`` (the service account's files) locate the API server
    in a cluster.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        deployments: Mapping[str, DeploymentRef],
        access: ClusterAccess = ClusterAccess(),
        *,
        env: Mapping[str, str] | None = None,
        secrets: Path = SERVICE_ACCOUNT,
        wall: Callable[[], float] = time.time,
        timeout_s: float = 3.0,
    ) -> None:
        self._api = _Api(
            session,
            access,
            env=os.environ if env is None else env,
            secrets=secrets,
            timeout_s=timeout_s,
        )
        self._wall = wall
        own = None
        if any(ref.namespace is None for ref in deployments.values()):
            own = _own_namespace(secrets)
        self._watched: dict[str, _Watched] = {}
        for entry, ref in deployments.items():
            namespace = ref.namespace or own or "default"
            where = f"deployment {namespace}/{ref.name}"
            self._watched[entry] = _Watched(
                ref,
                namespace,
                _Health(where, "scaling on the replicas the signals see"),
                _Health(f"the pods of {where}", "ready times of pending replicas unknown"),
            )

    async def count(self, deployment: str, now: float) -> ReplicaCount | None:
        """The deployment's replicas now; ``None`` when it is not one of ours or unreadable."""
        watched = self._watched.get(deployment)
        if watched is None:
            return None
        offset = now - self._wall()
        ref, namespace = watched.ref, watched.namespace
        body = await self._api.get(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{ref.name}",
            {},
            what=f"deployment {ref.name}",
            verb="get deployments.apps",
            namespace=namespace,
        )
        read = _deployment(body) if isinstance(body, dict) else body
        if isinstance(read, _Failure):
            watched.deployment.failed(read)
            return None
        watched.deployment.succeeded()
        asked, ready, selector = read
        pending = max(0, asked - ready)
        # Listed even with none pending, so that a missing permission shows at once, not at
        # the first scale-up.
        body = await self._api.get(
            f"/api/v1/namespaces/{namespace}/pods",
            {"labelSelector": selector},
            what=f"pods of deployment {ref.name}",
            verb="list pods",
            namespace=namespace,
        )
        created = _not_ready_created(body) if isinstance(body, dict) else body
        if isinstance(created, _Failure):
            watched.pods.failed(created)
            why = f"ready times of {pending} pending replicas unknown: {created.why}"
            return ReplicaCount(ready, pending, note=why if pending else None)
        watched.pods.succeeded()
        # The oldest not-ready pods are the pending replicas that should be ready first.
        due = sorted(at + ref.cold_start_s + offset for at in created)[:pending]
        podless = pending - len(due)
        note = f"{podless} of {pending} pending replicas have no pod yet" if podless else None
        return ReplicaCount(ready, pending, tuple(due), note)


class _ByDeployment:
    """Routes each deployment to the source of its API server."""

    def __init__(self, routes: Mapping[str, ReplicaSource]) -> None:
        self._routes = routes

    async def count(self, deployment: str, now: float) -> ReplicaCount | None:
        source = self._routes.get(deployment)
        return None if source is None else await source.count(deployment, now)


def replicas_from_spec(
    entries: Sequence[ScalingEntry],
    session: aiohttp.ClientSession,
    *,
    wall: Callable[[], float] = time.time,
) -> ReplicaSource | None:
    """The replica source of the entries with a ``kubernetes`` section (one client per API
    server and credentials), or ``None`` when none has one. Other entries count as unknown."""
    groups: dict[ClusterAccess, dict[str, DeploymentRef]] = {}
    for entry in entries:
        kube = entry.kubernetes
        if kube is None:
            continue
        if any(entry.deployment in refs for refs in groups.values()):
            # Roles of one deployment share its count: the first entry's section says where.
            continue
        access = ClusterAccess(kube.api_server, kube.token_file, kube.ca_file)
        ref = DeploymentRef(kube.name or entry.deployment, kube.namespace, entry.cold_start_s)
        groups.setdefault(access, {})[entry.deployment] = ref
    sources = [
        (refs, KubernetesReplicas(session, refs, access, wall=wall))
        for access, refs in groups.items()
    ]
    if not sources:
        return None
    if len(sources) == 1:
        return sources[0][1]
    return _ByDeployment({name: source for refs, source in sources for name in refs})


def _deployment(body: Mapping[str, Any]) -> tuple[int, int, str] | _Failure:
    """Replicas asked for, ready, and the label selector of an apps/v1 Deployment."""
    try:
        spec = body["spec"]
        status = body.get("status") or {}
        asked = int(spec.get("replicas", 1))  # the API's default
        ready = int(status.get("readyReplicas", 0))  # absent while none is ready
        selector = _selector(spec["selector"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return _Failure(f"malformed Deployment from the API server ({exc!r})")
    return asked, ready, selector


def _selector(selector: Mapping[str, Any]) -> str:
    """A LabelSelector as the ``labelSelector`` query parameter."""
    parts = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for rule in selector.get("matchExpressions") or ():
        key, operator, values = rule["key"], rule["operator"], rule.get("values") or ()
        if operator in ("In", "NotIn"):
            parts.append(f"{key} {operator.lower()} ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
    return ",".join(parts)


def _not_ready_created(body: Mapping[str, Any]) -> list[float] | _Failure:
    """Creation times (epoch seconds) of a v1 PodList's pods that may yet become ready."""
    try:
        return [
            _epoch(pod["metadata"]["creationTimestamp"])
            for pod in body["items"]
            if not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in _FINISHED
            and not _ready(pod.get("status") or {})
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return _Failure(f"malformed PodList from the API server ({exc!r})")


def _ready(status: Mapping[str, Any]) -> bool:
    conditions: Iterable[Mapping[str, Any]] = status.get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _epoch(stamp: str) -> float:
    """An RFC 3339 time of the API (``2025-01-02T03:04:05Z``) in epoch seconds."""
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _status_message(body: bytes) -> str:
    """The message of an API ``Status`` answer, or the start of a body that is not one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode(errors="replace").strip()
        return text[:200]
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return str(payload["message"])
    return ""


def _own_namespace(secrets: Path) -> str | None:
    """The namespace the scaler runs in (its service account's), if it runs in a cluster."""
    try:
        return (secrets / "namespace").read_text().strip() or None
    except OSError:
        return None
