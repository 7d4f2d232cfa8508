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
from botocore.exceptions import BotoCoreError
from botocore.session import Session

from tiergate.errors import UpstreamCredentialsError


def resolve_region(configured: str | None, session: Session, environ: Mapping[str, str]) -> str:
    """The spec's region, else ``AWS_REGION``, else botocore's (``AWS_DEFAULT_REGION``, profile)."""
    region = configured or environ.get("AWS_REGION") or session.get_config_variable("region")
    if not isinstance(region, str) or not region:
        raise ValueError(
            "no AWS region: set 'region' in the fleet spec, or AWS_REGION / AWS_DEFAULT_REGION"
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
        try:
            refresh_needed = getattr(credentials, "refresh_needed", None)
            if refresh_needed is not None and refresh_needed():
                # Temporary credentials near expiry: refreshing may call STS or IMDS.
                frozen: ReadOnlyCredentials = await asyncio.to_thread(
                    credentials.get_frozen_credentials
                )
                return frozen
            return credentials.get_frozen_credentials()
        except BotoCoreError as exc:
            raise UpstreamCredentialsError(
                self._tier, f"refreshing AWS credentials failed: {type(exc).__name__}"
            ) from exc

    async def _resolve(self) -> Credentials:
        async with self._lock:
            if self._credentials is not None:
                return self._credentials
            now = time.monotonic()
            if self._failed_at is not None and now - self._failed_at < self._retry_after_s:
                raise UpstreamCredentialsError(self._tier, "no AWS credentials (retrying later)")
            try:
                credentials = await asyncio.to_thread(self._session.get_credentials)
            except BotoCoreError as exc:
                self._failed_at = now
                raise UpstreamCredentialsError(
                    self._tier, f"resolving AWS credentials failed: {exc}"
                ) from exc
            if credentials is None:
                self._failed_at = now
                raise UpstreamCredentialsError(
                    self._tier,
                    "no AWS credentials found (environment, shared profile, web identity, "
                    "container or instance metadata)",
                )
            self._credentials = credentials
            return credentials
