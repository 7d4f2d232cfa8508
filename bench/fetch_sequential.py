"""The huggingface_hub-style anchor of ``fetch.py``: one file at a time over one connection.

As ``hf_hub_download`` does per file: list the files (here the manifest), then for each one a
plain ``GET`` streamed in 10 MiB reads (huggingface_hub's download chunk size) into
``<name>.incomplete``, renamed into place when complete; no fsync. Unlike huggingface_hub, it
computes each file's sha256 while streaming and compares it with the manifest, so its time is
"with verification on". Prints one JSON line: files, bytes, and the paths whose hash differs.

    python bench/fetch_sequential.py http://127.0.0.1:PORT/model/ DEST
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

CHUNK_BYTES = 10 * 1024 * 1024
MANIFEST_NAME = "tiergate-manifest.json"


def _get(conn: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
    conn.request("GET", path, headers={"Accept-Encoding": "identity"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"GET {path}: HTTP {response.status}")
    return response


def download(base_url: str, dest: Path) -> dict[str, object]:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    base = parts.path if parts.path.endswith("/") else parts.path + "/"
    files = json.loads(_get(conn, base + MANIFEST_NAME).read())["files"]
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    total = 0
    mismatched: list[str] = []
    for item in files:
        target = dest / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".incomplete")
        hasher = hashlib.sha256()
        response = _get(conn, base + quote(item["path"]))
        with partial.open("wb") as handle:
            while count := response.readinto(buffer):
                hasher.update(view[:count])
                handle.write(view[:count])
                total += count
        os.replace(partial, target)
        if hasher.hexdigest() != item["sha256"]:
            mismatched.append(item["path"])
    conn.close()
    return {"files": len(files), "bytes": total, "mismatched": mismatched}


if __name__ == "__main__":
    print(json.dumps(download(sys.argv[1], Path(sys.argv[2]))))
