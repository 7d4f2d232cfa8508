"""A local Hugging Face Hub: the API subset huggingface_hub's ``repo_info(files_metadata=True)``
calls, ``/resolve/{commit}/{path}`` with byte ranges, and a second server playing the CDN that
the Hub redirects LFS files to (it refuses any request that still carries the token).

Repositories (all at commit ``COMMIT``, which the ``main`` and ``v1`` revisions name):

- ``org/model``: public; LFS shards (redirected to the CDN) and small git files (served here);
  ``rate-limited.bin`` answers 429 with Retry-After once; ``flaky.bin`` answers 503;
  ``whole.txt`` ignores ranges (200 with the full file).
- ``org/private``: listing and downloads need ``Authorization: Bearer TOKEN``.
- ``org/gated``: listed for anyone (as on the Hub), downloads refused with ``GatedRepo``.
- ``datasets/org/corpus``: a dataset repository.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from aiohttp import web

from tests.loopback import LoopbackServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REVISIONS = {"main": COMMIT, "v1": COMMIT, COMMIT: COMMIT}
TOKEN = "hf_test_token_never_shown"


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class RepoFile:
    data: bytes
    lfs: bool


@dataclass
class Repo:
    files: dict[str, RepoFile]
    private: bool = False
    gated: bool = False


MODEL_FILES = {
    ".gitattributes": RepoFile(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", False),
    "config.json": RepoFile(b'{"model_type": "llama"}', False),
    "model-00001-of-00002.safetensors": RepoFile(_data(2 * 1024 * 1024 + 99, 1), True),
    "model-00002-of-00002.safetensors": RepoFile(_data(200_000, 2), True),
    "sub dir/tokenizer.json": RepoFile(_data(5000, 3), False),
    "rate-limited.bin": RepoFile(_data(3000, 4), True),
    "flaky.bin": RepoFile(_data(100, 5), True),
    "whole.txt": RepoFile(b"served without ranges", False),
}


def default_repos() -> dict[str, Repo]:
    return {
        "models/org/model": Repo(dict(MODEL_FILES)),
        "models/org/private": Repo({"weights.bin": RepoFile(_data(1000, 6), True)}, private=True),
        "models/org/gated": Repo({"weights.bin": RepoFile(_data(1000, 7), True)}, gated=True),
        "datasets/org/corpus": Repo({"train.jsonl": RepoFile(_data(1500, 8), True)}),
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ranged(request: web.Request, data: bytes) -> web.Response:
    header = request.headers.get("Range")
    if header is None:
        return web.Response(body=data)
    first, _, last = header.removeprefix("bytes=").partition("-")
    start, end = int(first), min(int(last) + 1, len(data))
    if start >= len(data):
        return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
    return web.Response(
        status=206,
        body=data[start:end],
        headers={"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"},
    )


@dataclass
class FakeCdn(LoopbackServer):
    """Serves LFS blobs by sha256 at signed URLs; the token must never reach it."""

    blobs: dict[str, bytes] = field(default_factory=dict, repr=False)
    requests: list[dict[str, str]] = field(default_factory=list)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/blobs/{sha}", self._blob)
        return app

    async def _blob(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if "Authorization" in request.headers:
            return web.Response(status=400, text="a signed URL takes no Authorization header")
        if request.query.get("signature") != "ok" or request.match_info["sha"] not in self.blobs:
            return web.Response(status=403)
        return _ranged(request, self.blobs[request.match_info["sha"]])


@dataclass
class FakeHub(LoopbackServer):
    cdn: FakeCdn
    repos: dict[str, Repo] = field(default_factory=default_repos)
    resolved: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    api_calls: list[tuple[str, str | None]] = field(default_factory=list)
    rate_limited_once: bool = False

    def __post_init__(self) -> None:
        for repo in self.repos.values():
            for item in repo.files.values():
                if item.lfs:
                    self.cdn.blobs[_sha(item.data)] = item.data

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/{kind}/{org}/{name}", self._info)  # the default branch
        app.router.add_get("/api/{kind}/{org}/{name}/revision/{revision}", self._info)
        app.router.add_get("/{org}/{name}/resolve/{revision}/{path:.+}", self._resolve)
        app.router.add_get("/{kind}/{org}/{name}/resolve/{revision}/{path:.+}", self._resolve)
        return app

    def _repo(self, request: web.Request) -> tuple[str, Repo | None]:
        kind = request.match_info.get("kind", "models")
        key = f"{kind}/{request.match_info['org']}/{request.match_info['name']}"
        return key, self.repos.get(key)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    async def _info(self, request: web.Request) -> web.Response:
        key, repo = self._repo(request)
        self.api_calls.append((key, request.headers.get("Authorization")))
        if repo is None or (repo.private and not self._authorized(request)):
            return web.json_response(
                {"error": "Repository not found"},
                status=401 if repo is not None else 404,
                headers={"X-Error-Code": "RepoNotFound"},
            )
        commit = REVISIONS.get(request.match_info.get("revision", "main"))
        if commit is None:
            return web.json_response(
                {"error": "Invalid rev id"},
                status=404,
                headers={"X-Error-Code": "RevisionNotFound"},
            )
        assert request.query.get("blobs", "").lower() == "true", "files_metadata must be asked for"
        siblings = []
        for path, item in repo.files.items():
            sibling: dict[str, object] = {
                "rfilename": path,
                "size": len(item.data),
                "blobId": hashlib.sha1(item.data).hexdigest(),
            }
            if item.lfs:
                sibling["lfs"] = {
                    "sha256": _sha(item.data),
                    "size": len(item.data),
                    "pointerSize": 134,
                }
            siblings.append(sibling)
        name = key.split("/", 1)[1]
        return web.json_response(
            {
                "id": name,
                "sha": commit,
                "private": repo.private,
                "gated": repo.gated,
                "siblings": siblings,
            }
        )

    async def _resolve(self, request: web.Request) -> web.Response:
        key, repo = self._repo(request)
        path = request.match_info["path"]
        revision = request.match_info["revision"]
        self.resolved.append((key, revision, path, request.headers.get("Authorization")))
        if repo is None or (repo.private and not self._authorized(request)):
            return web.Response(status=401, headers={"X-Error-Code": "RepoNotFound"})
        if repo.gated:
            status = 403 if self._authorized(request) else 401
            message = f"Access to model {key} is restricted. You must have access to it."
            return web.Response(
                status=status, headers={"X-Error-Code": "GatedRepo", "X-Error-Message": message}
            )
        item = repo.files.get(path)
        if REVISIONS.get(revision) is None or item is None:
            return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"})
        if path == "rate-limited.bin" and not self.rate_limited_once:
            self.rate_limited_once = True
            return web.Response(status=429, headers={"Retry-After": "7"})
        if path == "flaky.bin":
            return web.Response(status=503)
        if path == "whole.txt":
            return web.Response(body=item.data)
        if item.lfs:
            location = f"http://127.0.0.1:{self.cdn.port}/blobs/{_sha(item.data)}?signature=ok"
            raise web.HTTPFound(location)
        return _ranged(request, item.data)
