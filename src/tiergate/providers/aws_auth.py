"""AWS request signing for providers: botocore's credential chain and its SigV4 signer.

Credentials come from botocore's standard chain (environment, shared credentials and config
files with ``AWS_PROFILE``, web identity / IRSA, container credentials, instance metadata).
Resolving or refreshing them may call the network, so it runs in a worker thread, never on the
event loop; a failed resolution is retried at most every ``retry_after_s``. Credentials are
never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.session import Session

from tiergate.errors import UpstreamCredentialsError
from tiergate.providers.base import ProviderSetupError


def resolve_region(
    tier: str, configured: str | None, session: Session, environ: Mapping[str, str]
) -> str:
    """The spec's region, else ``AWS_REGION``, else botocore's (``AWS_DEFAULT_REGION``, profile)."""
    region = configured or environ.get("AWS_REGION") or session.get_config_variable("region")
    if not isinstance(region, str) or not region:
        raise ProviderSetupError(
            f"tier '{tier}' has no AWS region: set 'region' in the fleet spec, or AWS_REGION / "
            "AWS_DEFAULT_REGION"
        )
    return region


class Signer:
    """Signs requests to one AWS service in one region with SigV4."""

    def __init__(
        self,
        tier: str,
        session: Session,
        *,
        service: str,
        region: str,
        retry_after_s: float = 30.0,
    ) -> None:
        self._tier = tier
        self._session = session
        self._service = service
        self.region = region
        self._retry_after_s = retry_after_s
        self._credentials: Credentials | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    async def sign(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` plus the SigV4 ones (``Authorization``, ``X-Amz-Date``, token)."""
        frozen = await self._frozen()
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(frozen, self._service, self.region).add_auth(request)
        return dict(request.headers.items())

    async def _frozen(self) -> ReadOnlyCredentials:
        credentials = self._credentials or await self._resolve()
        if not _refresh_needed(credentials):
            return credentials.get_frozen_credentials()
        # Temporary credentials near expiry: refreshing may call STS or IMDS. One refresh at
        # a time, in a worker thread; the others wait for it without holding the loop.
        async with self._lock:
            if not _refresh_needed(credentials):
                return credentials.get_frozen_credentials()
            self._check_backoff()
            try:
                frozen: ReadOnlyCredentials = await asyncio.to_thread(
                    credentials.get_frozen_credentials
                )
            except (BotoCoreError, ClientError) as exc:
                self._failed_at = time.monotonic()
                raise UpstreamCredentialsError(
                    self._tier, f"refreshing AWS credentials failed: {_describe(exc)}"
                ) from exc
            return frozen

    async def _resolve(self) -> Credentials:
        async with self._lock:
            if self._credentials is not None:
                return self._credentials
            self._check_backoff()
            try:
                credentials = await asyncio.to_thread(self._session.get_credentials)
            except (BotoCoreError, ClientError) as exc:
                self._failed_at = time.monotonic()
                raise UpstreamCredentialsError(
                    self._tier, f"resolving AWS credentials failed: {_describe(exc)}"
                ) from exc
            if credentials is None:
                self._failed_at = time.monotonic()
                raise UpstreamCredentialsError(
                    self._tier,
                    "no AWS credentials found (environment, shared profile, web identity, "
                    "container or instance metadata)",
                )
            self._credentials = credentials
            return credentials

    def _check_backoff(self) -> None:
        """After a failed lookup, fail at once until ``retry_after_s`` has passed."""
        if self._failed_at is not None:
            if time.monotonic() - self._failed_at < self._retry_after_s:
                raise UpstreamCredentialsError(
                    self._tier, "AWS credentials unavailable (looked up again shortly)"
                )
            self._failed_at = None


def _refresh_needed(credentials: Credentials) -> bool:
    refresh_needed = getattr(credentials, "refresh_needed", None)
    return bool(refresh_needed is not None and refresh_needed())


def _describe(exc: Exception) -> str:
    """The error's type (and AWS error code): never its text, which may quote a token."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return f"{type(exc).__name__} {code}".strip()
    return type(exc).__name__
