"""A fake of AWS STS's ``AssumeRoleWithWebIdentity``: how EKS pods get credentials (IRSA).

On EKS, a pod's service account token is projected into a file; the SDK's web-identity provider
(``AWS_WEB_IDENTITY_TOKEN_FILE``, ``AWS_ROLE_ARN``) reads it and trades it, unsigned, for
temporary credentials with ``POST /`` of the form
``Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=...&RoleSessionName=...&
WebIdentityToken=...``. ``FakeSTS`` answers that call on ``127.0.0.1`` with a free port (point
botocore at it with ``AWS_ENDPOINT_URL_STS``) in STS's query-protocol XML, and hands out a new
credential set per call, valid for ``lifetime``; ``on_issue`` learns each set before the answer
leaves (``on_issue=lambda keys: bedrock.accept(*keys)`` makes a FakeBedrock accept them).

The server runs its own event loop in a background thread: a client that blocks the test's
event loop while it waits for STS still gets its answer, so the test fails on an assertion
rather than hanging. ``on_issue`` is called on that thread.

Knobs, plain attributes read when a call arrives: ``lifetime``, ``delay_s`` (sleep before
answering) and ``refusal`` (answer every call with this STS error instead).

What it saw: ``calls`` (an :class:`AssumeRoleCall` per well-formed call, refused or not, in
arrival order), ``issued`` (the credential sets handed out), ``answered`` (calls answered so far,
lagging ``calls`` while one is pending) and ``rejected`` (a line per malformed call).
"""

from __future__ import annotations

import asyncio
import datetime
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, Self, TypeVar
from xml.etree import ElementTree as ET

from aiohttp import web

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ACTION = "AssumeRoleWithWebIdentity"
VERSION = "2011-06-15"
AUDIENCE = "sts.amazonaws.com"
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/(?:[^/]+/)*(?P<name>[^/]+)")
_STOP_TIMEOUT_S = 5.0
_T = TypeVar("_T")


class TemporaryCredentials(NamedTuple):
    """One credential set STS issued; unpacks as (access key, secret, session token)."""

    access_key: str
    secret_key: str
    session_token: str


@dataclass(frozen=True)
class AssumeRoleCall:
    """One well-formed AssumeRoleWithWebIdentity call: the role, session name and token."""

    role_arn: str
    session_name: str
    token: str


@dataclass(frozen=True)
class Refusal:
    """An STS error answer, e.g. ``Refusal("InvalidIdentityToken", "...", 400)``."""

    code: str
    message: str
    status: int = 400


class FakeSTS:
    """An in-process STS that trades web identity tokens for temporary credentials."""

    def __init__(
        self,
        *,
        lifetime: datetime.timedelta = datetime.timedelta(hours=1),
        delay_s: float = 0.0,
        on_issue: Callable[[TemporaryCredentials], None] | None = None,
        region: str = "us-east-1",
        subject: str = "system:serviceaccount:serving:tiergate",
    ) -> None:
        self.lifetime = lifetime
        self.delay_s = delay_s
        self.refusal: Refusal | None = None
        self.region = region
        self.subject = subject
        self.calls: list[AssumeRoleCall] = []
        self.issued: list[TemporaryCredentials] = []
        self.answered = 0
        self.rejected: list[str] = []
        self.port = 0
        self._on_issue = on_issue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The endpoint URL, ``http://127.0.0.1:PORT`` (``AWS_ENDPOINT_URL_STS``)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-sts", daemon=True)
        self._thread.start()
        self.port = await self._on_own_loop(self._serve())
        return self

    async def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            await self._on_own_loop(self._runner.cleanup())
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, _STOP_TIMEOUT_S)
        self._loop.close()
        self._loop = self._thread = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _on_own_loop(self, work: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def _serve(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port: int = self._runner.addresses[0][1]
        return port

    # -- one call ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else {}
        params = {name: value for name, value in form.items() if isinstance(value, str)}
        problem = _problem(request, params)
        if problem is not None:
            self.rejected.append(problem.message)
            return _error(problem)
        call = AssumeRoleCall(
            params["RoleArn"], params["RoleSessionName"], params["WebIdentityToken"]
        )
        self.calls.append(call)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        refusal = self.refusal
        if refusal is not None:
            self.answered += 1
            return _error(refusal)
        credentials = _new_credentials(len(self.issued))
        expiration = datetime.datetime.now(datetime.UTC) + self.lifetime
        if self._on_issue is not None:
            self._on_issue(credentials)
        self.issued.append(credentials)
        self.answered += 1
        return _xml(200, self._result(call, credentials, expiration))

    def _result(
        self, call: AssumeRoleCall, credentials: TemporaryCredentials, expiration: datetime.datetime
    ) -> ET.Element:
        role = _ROLE_ARN.fullmatch(call.role_arn)
        assert role is not None  # _problem() refuses any other ARN
        account, name = role["account"], role["name"]
        root = ET.Element(f"{ACTION}Response", xmlns=NAMESPACE)
        result = ET.SubElement(root, f"{ACTION}Result")
        creds = _add(result, "Credentials", None)
        _add(creds, "AccessKeyId", credentials.access_key)
        _add(creds, "SecretAccessKey", credentials.secret_key)
        _add(creds, "SessionToken", credentials.session_token)
        _add(creds, "Expiration", expiration.strftime("%Y-%m-%dT%H:%M:%SZ"))
        _add(result, "SubjectFromWebIdentityToken", self.subject)
        user = _add(result, "AssumedRoleUser", None)
        _add(user, "Arn", f"arn:aws:sts::{account}:assumed-role/{name}/{call.session_name}")
        _add(user, "AssumedRoleId", f"AROA{account}EXAMPLE:{call.session_name}")
        provider = f"oidc.eks.{self.region}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
        _add(result, "Provider", f"arn:aws:iam::{account}:oidc-provider/{provider}")
        _add(result, "Audience", AUDIENCE)
        metadata = _add(root, "ResponseMetadata", None)
        _add(metadata, "RequestId", str(uuid.uuid4()))
        return root


def _problem(request: web.Request, params: dict[str, str]) -> Refusal | None:
    """Why STS would refuse the call before looking at the token, if it would."""
    if request.method != "POST" or request.path != "/":
        return Refusal("InvalidAction", f"{request.method} {request.path} is not an STS call")
    action = params.get("Action")
    if action != ACTION:
        return Refusal("InvalidAction", f"Could not find operation {action} for version {VERSION}")
    if params.get("Version") != VERSION:
        return Refusal("InvalidAction", f"Version {params.get('Version')} is not {VERSION}")
    for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
        if not params.get(name):
            return Refusal("MissingParameter", f"The request must contain the parameter {name}")
    if not _ROLE_ARN.fullmatch(params["RoleArn"]):
        return Refusal(
            "ValidationError",
            "1 validation error detected: Value at 'roleArn' failed to satisfy constraint: "
            "Member must be a role ARN",
        )
    return None


def _new_credentials(number: int) -> TemporaryCredentials:
    # Temporary access keys start with ASIA; the number makes each set tell apart in a failure.
    return TemporaryCredentials(
        access_key=f"ASIA{number:04d}{secrets.token_hex(6).upper()}",
        secret_key=secrets.token_urlsafe(30),
        session_token=f"IQoJb3JpZ2luX2VjE{number:04d}{secrets.token_urlsafe(48)}",
    )


def _add(parent: ET.Element, tag: str, text: str | None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = text
    return child


def _error(refusal: Refusal) -> web.Response:
    root = ET.Element("ErrorResponse", xmlns=NAMESPACE)
    error = _add(root, "Error", None)
    _add(error, "Type", "Sender" if refusal.status < 500 else "Receiver")
    _add(error, "Code", refusal.code)
    _add(error, "Message", refusal.message)
    _add(root, "RequestId", str(uuid.uuid4()))
    return _xml(refusal.status, root)


def _xml(status: int, root: ET.Element) -> web.Response:
    request_id = root.findtext(".//RequestId") or ""
    return web.Response(
        status=status,
        body=ET.tostring(root, encoding="utf-8", xml_declaration=False),
        content_type="text/xml",
        headers={"x-amzn-RequestId": request_id},
    )
