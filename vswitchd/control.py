"""Management socket server: commands registered by name, like OVS unixctl.

Each command is registered with its usage and a one-line help text and is
listed by the built-in `list-commands`.  A handler takes the request's
"args" object and returns (or, if a coroutine function, resolves to) a JSON
value.  A `VswitchError` becomes an error reply carrying its message; any
other exception is a bug: it is logged with its traceback and answered with
`internal error: <type>: <msg>`, and the daemon keeps serving.

Every connection is served by its own named task, so a slow client delays
nobody else.  A connection must deliver each complete request line within
`client_timeout_s` of the previous reply (or of connecting), otherwise it is
closed; this frees the slots of stalled and idle clients alike, which
matters because connections are capped at `max_clients`.

Handlers run on the event loop: they must not block.  They are called one
request at a time per connection but concurrently across connections.

Wire format: see vswitchd.protocol.
"""

from __future__ import annotations

import asyncio
import grp
import inspect
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vswitchd.errors import VswitchError
from vswitchd.protocol import (
    MAX_REQUEST_BYTES,
    ProtocolError,
    decode_request,
    encode_error,
    encode_ok,
    request_id_of,
)

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
# A streaming command (`capture`) takes the connection over: it gets the
# request's id and args and the connection, sends its own reply line and
# whatever follows; the connection is closed when it returns.
StreamHandler = Callable[[int | str | None, dict[str, Any], asyncio.StreamReader,
                          asyncio.StreamWriter], Awaitable[None]]

DEFAULT_CLIENT_TIMEOUT_S = 10.0
DEFAULT_MAX_CLIENTS = 64
# How long start() waits for an existing socket to answer before calling it stale.
_PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    usage: str
    help: str


class ControlServer:
    """The daemon's end of the management socket at `path`."""

    def __init__(
        self,
        path: str,
        *,
        mode: int = 0o660,
        group: str | None = None,
        client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self.path = path
        self.mode = mode
        self.group = group
        self.client_timeout_s = client_timeout_s
        self.max_clients = max_clients
        self._commands: dict[str, Command] = {}
        self._streams: dict[str, StreamHandler] = {}
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._next_client = 0
        # (st_dev, st_ino) of the socket we bound, so stop() never removes a
        # socket file that someone else has put at the same path since.
        self._socket_identity: tuple[int, int] | None = None
        self.register("list-commands", self._list_commands, "", "List the available commands")

    # Commands.

    def register(self, name: str, handler: Handler, usage: str, help: str) -> None:
        """Register `handler` as command `name`; `usage` describes its arguments."""
        if name in self._commands:
            raise ValueError(f"management command {name!r} is already registered")
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"invalid management command name {name!r}")
        self._commands[name] = Command(name, handler, usage, help)

    def register_stream(self, name: str, handler: StreamHandler, usage: str, help: str) -> None:
        """Register streaming command `name` (see StreamHandler)."""
        def refuse(args: dict[str, Any]) -> None:
            raise VswitchError(f"{name} streams: it needs a connection of its own")
        self.register(name, refuse, usage, help)
        self._streams[name] = handler

    def _list_commands(self, args: dict[str, Any]) -> list[dict[str, str]]:
        return [
            {"name": c.name, "usage": c.usage, "help": c.help}
            for c in sorted(self._commands.values(), key=lambda c: c.name)
        ]

    # Lifecycle.

    async def start(self) -> None:
        """Bind and listen on `path`, replacing a stale socket left by a dead daemon."""
        if self._server is not None:
            raise RuntimeError("ControlServer already started")
        gid = self._lookup_group()
        parent = os.path.dirname(self.path)
        try:
            if parent:
                os.makedirs(parent, mode=0o755, exist_ok=True)
        except OSError as e:
            raise VswitchError(
                f"management.socket: cannot create directory {parent}: {e.strerror or e}"
            ) from e
        await self._remove_stale_socket()

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Set mode and group between bind() and listen(): until listen(),
            # a connect() is refused, so nobody slips in under looser permissions.
            sock.bind(self.path)
            st = os.stat(self.path)
            self._socket_identity = (st.st_dev, st.st_ino)
            os.chmod(self.path, self.mode)
            if gid is not None:
                try:
                    os.chown(self.path, -1, gid)
                except OSError as e:
                    raise VswitchError(
                        f'management.socket_group: cannot give {self.path} to group '
                        f'"{self.group}": {e.strerror or e}'
                    ) from e
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(
                self._serve_client, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except OSError as e:
            sock.close()
            self._remove_own_socket()
            raise VswitchError(f"management.socket: cannot listen on {self.path}: "
                               f"{e.strerror or e}") from e
        except BaseException:
            sock.close()
            self._remove_own_socket()
            raise
        log.info("management socket listening on %s", self.path)

    async def stop(self) -> None:
        """Close the listener and every client connection; remove the socket file."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        current = asyncio.current_task()
        # A handler may itself call stop() (e.g. an "exit" command): don't
        # cancel the task we are running in, it finishes its reply and exits.
        tasks = [t for t in self._clients if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if current not in self._clients:
            # From Python 3.12 wait_closed() waits for every connection,
            # which would include the one this handler is answering.
            await server.wait_closed()
        self._remove_own_socket()
        log.info("management socket %s closed", self.path)

    def _lookup_group(self) -> int | None:
        if self.group is None:
            return None
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise VswitchError(
                f'management.socket_group: group "{self.group}" does not exist'
            ) from None

    async def _remove_stale_socket(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise VswitchError(f"management.socket: {self.path} exists and is not a socket")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), _PROBE_TIMEOUT_S
            )
        except ConnectionRefusedError:
            pass  # Nobody listens: a leftover of a daemon that died.
        except FileNotFoundError:
            return  # Removed under our feet; fine.
        except TimeoutError:
            # A full backlog also looks like this; assume someone is alive.
            raise VswitchError(
                f"management.socket: {self.path} is in use by a running vswitchd"
            ) from None
        except OSError as e:
            raise VswitchError(
                f"management.socket: cannot check {self.path}: {e.strerror or e}"
            ) from e
        else:
            writer.close()
            raise VswitchError(f"management.socket: {self.path} is in use by a running vswitchd")
        log.info("removing stale management socket %s", self.path)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _remove_own_socket(self) -> None:
        identity, self._socket_identity = self._socket_identity, None
        if identity is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove management socket %s: %s", self.path, e)

    # Connections.

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._next_client += 1
        task.set_name(f"control-client-{self._next_client}")
        if len(self._clients) >= self.max_clients:
            log.warning("management socket: too many connections, refusing one")
            msg = f"too many management connections (limit {self.max_clients})"
            try:
                await self._send(writer, encode_error(None, msg))
            except (ConnectionError, TimeoutError):
                pass
            await self._close(writer)
            return
        self._clients[task] = writer
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, TimeoutError) as e:
            log.debug("management client went away: %s", e)
        finally:
            del self._clients[task]
            await self._close(writer)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; False when the connection should close."""
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), self.client_timeout_s)
        except asyncio.IncompleteReadError:
            return False  # EOF; a partial last line is dropped unanswered.
        except asyncio.LimitOverrunError:
            msg = f"request too long (limit {MAX_REQUEST_BYTES} bytes per line)"
            await self._send(writer, encode_error(None, msg))
            return False
        except TimeoutError:
            log.debug("management client sent no complete request in %s s; closing",
                      self.client_timeout_s)
            return False
        if line.strip():
            stream = self._stream_request(line)
            if stream is not None:
                handler, request = stream
                try:
                    await handler(request.id, request.args, reader, writer)
                except VswitchError as e:
                    await self._send(writer, encode_error(request.id, str(e)))
                return False
            await self._send(writer, await self.dispatch(line))
        return True

    def _stream_request(self, line: bytes) -> tuple[StreamHandler, Any] | None:
        if not self._streams:
            return None
        try:
            request = decode_request(line)
        except ProtocolError:
            return None     # dispatch() answers it
        handler = self._streams.get(request.command)
        return None if handler is None else (handler, request)

    async def dispatch(self, line: bytes) -> bytes:
        """Answer one request line with one reply line; never raises (but cancellation)."""
        try:
            request = decode_request(line)
        except ProtocolError as e:
            return encode_error(request_id_of(line), str(e))
        command = self._commands.get(request.command)
        if command is None:
            known = ", ".join(sorted(self._commands))
            return encode_error(
                request.id, f'unknown command "{request.command}"; known commands: {known}'
            )
        log.debug("management command %s %s", request.command, request.args)
        try:
            result = command.handler(request.args)
            if inspect.isawaitable(result):
                result = await result
            return encode_ok(request.id, result)
        except VswitchError as e:
            return encode_error(request.id, str(e))
        except Exception as e:
            log.exception("management command %s failed", request.command)
            return encode_error(request.id, f"internal error: {type(e).__name__}: {e}")

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        # A client that never reads its replies must not pin the task forever.
        await asyncio.wait_for(writer.drain(), self.client_timeout_s)

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError as e:  # ConnectionError included: the peer left first.
            log.debug("closing management connection: %s", e)
