"""A stand-in for the test Postgres on a TCP port of its own, for the daemon's start and stop.

``PgProxy`` forwards to the real server once it listens (nothing answers on its port before
``listen``, as while a server is down), can go silent (``freeze``: a network partition, every
connection stays open and nothing passes either way, new ones are accepted and never answered),
and can answer every new connection with a Postgres error instead (``refuse_with``: the server
starting up, a wrong password), as a real server does before authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from urllib.parse import urlsplit, urlunsplit

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def error_response(sqlstate: str, message: str) -> bytes:
    """A Postgres ``ErrorResponse`` (FATAL), as a server sends before closing."""
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", 4 + len(body)) + body


class PgProxy:
    def __init__(self, upstream_url: str, port: int | None = None) -> None:
        parts = urlsplit(upstream_url)
        if not parts.hostname or not parts.port:
            raise ValueError("the test database is not on TCP")  # a socket URL: no proxy
        self._url = parts
        self.upstream = (parts.hostname, parts.port)
        self.port = port or free_port()
        self.frozen = False
        self.refuse_with: tuple[str, str] | None = None
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, database: str | None = None) -> str:
        """The upstream URL with this proxy's port (and another database, if given)."""
        netloc = self._url.netloc.rsplit(":", 1)[0] + f":{self.port}"
        path = f"/{database}" if database is not None else self._url.path
        return urlunsplit(self._url._replace(netloc=netloc, path=path))

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    def freeze(self) -> None:
        self.frozen = True

    async def close(self) -> None:
        """Stop listening and end every connection (each handler returns: none is cancelled)."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def _track(self, w: asyncio.StreamWriter) -> None:
        self._writers.add(w)

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._track(cw)
        self.connections += 1
        try:
            if self.frozen:
                await self._closing.wait()  # accepted, never answered
            if self.refuse_with is not None:
                await self._refuse(cr, cw, *self.refuse_with)
                return
            ur, uw = await asyncio.open_connection(*self.upstream)
            self._track(uw)
            await asyncio.gather(self._pump(cr, uw), self._pump(ur, cw))
        except (OSError, asyncio.IncompleteReadError, struct.error):
            pass
        finally:
            self._tasks.discard(task)
            cw.close()

    async def _refuse(
        self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter, sqlstate: str, message: str
    ) -> None:
        while True:
            (length,) = struct.unpack("!i", await cr.readexactly(4))
            payload = await cr.readexactly(length - 4)
            (code,) = struct.unpack("!i", payload[:4])
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                cw.write(b"N")  # no TLS here: the client goes on in plain text
                await cw.drain()
                continue
            break  # the startup message: refused before authentication
        cw.write(error_response(sqlstate, message))
        await cw.drain()

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await r.read(65536)
                if self.frozen:
                    await self._closing.wait()  # swallowed: a black hole
                    return
                if not data:
                    return
                w.write(data)
                await w.drain()
        finally:
            w.close()
