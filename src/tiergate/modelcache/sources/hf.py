"""``hf://org/repo[@revision]`` (or ``hf://datasets/org/repo[@revision]``): a Hub repository at
one commit.

The listing is one huggingface_hub ``repo_info(files_metadata=True)`` call, run in a thread: it
names the commit the revision points to, and every file's size and, for LFS files, its sha256
(small files kept in git have none). Every read then asks for that commit, so a branch that
moves during a fetch cannot mix two snapshots.

Reads are ranged GETs of ``{endpoint}/{repo}/resolve/{commit}/{path}`` (:mod:`.ranged`). The Hub
redirects LFS files to a CDN: redirects are followed, keeping the ``Range`` header and
dropping ``Authorization`` when the host changes (the CDN URL is signed; the token must not
leave the Hub). The endpoint comes from the argument or ``HF_ENDPOINT``, the token from the
argument or ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN``; a token is never put in a message.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from huggingface_hub import HfApi
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tiergate.modelcache.errors import FetchError, RetryableError, SourceError
from tiergate.modelcache.plan import FileEntry
from tiergate.modelcache.sources.ranged import RangeClient, RangeGet, retryable_status

DEFAULT_ENDPOINT = "https://huggingface.co"
# The transport errors huggingface_hub lets through come from its HTTP client, which changed
# between versions (requests, httpx, httpx2); they share no base class worth importing.
_TRANSPORT_MODULES = frozenset({"requests", "urllib3", "httpx", "httpx2", "httpcore"})


def parse_hf_url(url: str) -> tuple[str, str, str | None]:
    """``hf://[datasets/]org/repo[@revision]`` as (repo type, repo id, revision or None)."""
    if not url.startswith("hf://"):
        raise SourceError(f"{url}: not an hf://org/repo[@revision] URL")
    body, at, revision = url[len("hf://") :].partition("@")
    if at and not revision:
        raise SourceError(f"{url}: empty revision after '@'")
    parts = body.strip("/").split("/")
    repo_type = "model"
    if len(parts) == 3 and parts[0] in ("models", "datasets"):
        repo_type, parts = parts[0].removesuffix("s"), parts[1:]
    if len(parts) != 2 or not all(parts):
        raise SourceError(f"{url}: expected hf://org/repo[@revision]")
    bad = next((part for part in parts if not _REPO_NAME.fullmatch(part) or ".." in part), None)
    if bad is not None or "--" in body:
        raise SourceError(
            f"{url}: {bad or body!r} is not a Hub name (letters, digits, '-', '_', '.'; at most "
            "96; not starting or ending with '-' or '.'; no '--' or '..')"
        )
    return repo_type, "/".join(parts), unquote(revision) if revision else None


# The Hub's rule for an org or repo name (huggingface_hub's validate_repo_id).
_REPO_NAME = re.compile(r"(?![-.])[A-Za-z0-9_.-]{1,96}(?<![-.])")


class HfSource:
    """The files of one Hub repository at the commit its revision names when listed."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        connect_timeout_s: float = 10.0,
        listing_timeout_s: float = 60.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.url = url
        self.repo_type, self.repo_id, self.revision = parse_hf_url(url)
        self.endpoint = (endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self._token = token or env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
        self.commit: str | None = None
        self._sizes: dict[str, int] = {}
        self._ranges = RangeClient(connect_timeout_s)
        self._listing_timeout_s = listing_timeout_s
        self._listing_lock = asyncio.Lock()

    async def list_files(self) -> list[FileEntry]:
        async with self._listing_lock:
            commit, entries = await asyncio.to_thread(self._list_at_commit)
            self.commit = commit
            self._sizes = {entry.path: entry.size for entry in entries}
            return entries

    async def reader(self, path: str) -> RangeGet:
        """Ranged GETs of ``path`` at the pinned commit, redirects followed (the token kept to
        the Hub's host)."""
        if self.commit is None:
            await self._pin_commit()
        where = f"{self.url}: {path}"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        return RangeGet(
            self._ranges,
            self.resolve_url(path),
            where,
            headers=headers,
            size=self._sizes.get(path),
            status_error=self._refused,
        )

    def _refused(
        self, status: int, headers: Mapping[str, str], code: str | None, what: str
    ) -> FetchError:
        return _status_error(status, headers, what, token=bool(self._token))

    async def _pin_commit(self) -> None:
        """List once when a read comes first, so that every read sees the same commit."""
        async with self._listing_lock:
            if self.commit is None:
                self.commit, entries = await asyncio.to_thread(self._list_at_commit)
                self._sizes = {entry.path: entry.size for entry in entries}

    async def close(self) -> None:
        self._ranges.close()

    def resolve_url(self, path: str) -> str:
        """Where the Hub serves ``path`` of the pinned commit."""
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"{self.endpoint}/{kind}{self.repo_id}/resolve/{self.commit}/{quote(path)}"

    def _list_at_commit(self) -> tuple[str, list[FileEntry]]:
        where = f"{self.url} at {self.endpoint}"
        # token=False, not None: without a token huggingface_hub would fall back to a token
        # file that the reads, which send only this source's token, would not use.
        api = HfApi(endpoint=self.endpoint, token=self._token or False, library_name="tiergate")
        try:
            info = api.repo_info(
                self.repo_id,
                revision=self.revision,
                repo_type=self.repo_type,
                files_metadata=True,
                timeout=self._listing_timeout_s,
            )
        # Broad on purpose: huggingface_hub's errors share no base class across its versions;
        # _hub_error picks the Hub and transport ones, and anything else is re-raised unchanged.
        except Exception as exc:
            error = _hub_error(exc, where, self.revision, token=bool(self._token))
            if error is None:
                raise
            raise error from exc
        if not info.sha:
            raise SourceError(f"{where}: the Hub named no commit for this revision")
        entries: list[FileEntry] = []
        for sibling in getattr(info, "siblings", None) or ():
            if sibling.size is None:
                raise SourceError(f"{where}: the Hub gave no size for {sibling.rfilename}")
            sha256 = sibling.lfs.sha256 if sibling.lfs is not None else None
            # The git blob id changes with the file: its version, LFS or not.
            version = getattr(sibling, "blob_id", None)
            entries.append(FileEntry(sibling.rfilename, sibling.size, sha256, version=version))
        return info.sha, sorted(entries, key=lambda entry: entry.path)


def _hub_error(
    exc: Exception, where: str, revision: str | None, *, token: bool
) -> FetchError | None:
    """The one place huggingface_hub's listing errors become the fetcher's; None for anything
    that is neither a Hub nor a transport error (a bug, to be raised unchanged)."""
    if isinstance(exc, GatedRepoError):
        return SourceError(f"{where}: {_gated_hint(token)}")
    if isinstance(exc, RevisionNotFoundError):
        return SourceError(f"{where}: revision {revision!r} not found")
    if isinstance(exc, RepositoryNotFoundError):
        hint = "the token has no access to it" if token else "set HF_TOKEN if it is private"
        return SourceError(f"{where}: repository not found ({hint})")
    if isinstance(exc, DisabledRepoError):
        return SourceError(f"{where}: the repository is disabled")
    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        return _status_error(response.status_code, response.headers, where, token=token)
    if isinstance(exc, OfflineModeIsEnabled):
        return SourceError(
            f"{where}: offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE), so the Hub "
            "cannot be listed; --trust-marker accepts a complete DEST without it"
        )
    if type(exc).__module__.partition(".")[0] in _TRANSPORT_MODULES or isinstance(exc, OSError):
        return RetryableError(f"{where}: {type(exc).__name__}: {exc}")
    return None


def _status_error(
    status: int, headers: Mapping[str, str], where: str, *, token: bool
) -> FetchError:
    """The error of a refused request: retryable as :func:`.ranged.retryable_status` says;
    final for the rest, with a hint for the common refusals."""
    retryable = retryable_status(status, headers, f"{where}: HTTP {status}")
    if retryable is not None:
        return retryable
    code = headers.get("X-Error-Code", "")
    message = headers.get("X-Error-Message", "")
    detail = f" ({message})" if message else ""
    if code == "GatedRepo":
        return SourceError(f"{where}: {_gated_hint(token)}{detail}")
    if status in (401, 403):
        hint = "the token has no access" if token else "set HF_TOKEN"
        return SourceError(f"{where}: access denied (HTTP {status}): {hint}{detail}")
    if status == 404:
        return SourceError(f"{where}: not found (HTTP 404{', ' + code if code else ''}){detail}")
    return SourceError(f"{where}: HTTP {status}{detail}")


def _gated_hint(token: bool) -> str:
    if token:
        return "gated repository: the token's account has no access yet; request it on the Hub"
    return (
        "gated repository: request access on the Hub, then set HF_TOKEN to a token of that account"
    )
