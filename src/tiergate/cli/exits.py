"""Exit codes of every command, and the one place errors become them.

    0    done
    1    runtime failure: a port already in use, a store that cannot be reached or read
    2    usage or input error: a bad option, an invalid fleet spec, an unknown key id
    3-7  ``fetch`` only: no space, verification failed, source error, transfer failed,
         lock or marker wait timed out (docs/model-cache.md)
    130  ``demo`` stopped by Ctrl-C (the summary so far is printed)

click exits 2 on its own usage errors and 1 on a ``ClickException``, which fits the table.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator, Sequence
from typing import NoReturn

import click

from tiergate.errors import ListenError, SpecError, StoreUnavailableError, TiergateError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SPACE = 3
EXIT_VERIFY = 4
EXIT_SOURCE = 5
EXIT_TRANSFER = 6
EXIT_LOCK = 7
EXIT_INTERRUPTED = 130

# The first class an error is an instance of gives its code; anything else of ours is input.
_CODES: tuple[tuple[type[TiergateError], int], ...] = (
    (SpecError, EXIT_USAGE),
    (ListenError, EXIT_FAILURE),
    (StoreUnavailableError, EXIT_FAILURE),
)


def exit_code(error: TiergateError) -> int:
    """The exit code of a command that stops on ``error``."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return EXIT_USAGE


def fail(command: str, error: TiergateError) -> NoReturn:
    """Print ``error`` on stderr, naming ``command``, and exit with its code."""
    click.echo(f"tiergate {command}: {error}", err=True)
    raise SystemExit(exit_code(error)) from error


@contextlib.contextmanager
def listening(host: str, ports: Sequence[int]) -> Iterator[None]:
    """Translate a failure to listen on ``host`` at one of ``ports`` into a ``ListenError``
    naming the port (found by trying to bind each: gRPC's error carries no errno)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in {None, errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}:
            raise
        for port in ports:
            reason = _bind_error(host, port)
            if reason is not None:
                raise ListenError(host, port, reason) from exc
        if exc.errno is None:
            raise
        first = ports[0] if ports else 0
        raise ListenError(host, first, exc.errno) from exc


def _bind_error(host: str, port: int) -> int | None:
    """The errno of binding ``host:port`` now, None when it can be bound (or is 0)."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # The servers set SO_REUSEADDR too: a port in TIME_WAIT is not "in use".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return exc.errno
    return None


def check_port_free(host: str, port: int) -> None:
    """Raise ``ListenError`` when ``host:port`` cannot be bound now (before starting
    processes that share the port through SO_REUSEPORT, where a taken port would not fail)."""
    reason = _bind_error(host, port)
    if reason is not None:
        raise ListenError(host, port, reason)
