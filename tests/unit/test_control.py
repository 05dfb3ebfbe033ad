"""ControlServer over real Unix sockets in a temporary directory; no root needed."""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from vswitchd.control import ControlServer
from vswitchd.errors import VswitchError
from vswitchd.protocol import MAX_REQUEST_BYTES


@pytest.fixture
def sock_dir() -> Iterator[str]:
    # Not tmp_path: AF_UNIX paths are limited to 107 bytes.
    path = tempfile.mkdtemp(prefix="vsw-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir: str) -> str:
    return os.path.join(sock_dir, "ctl.sock")


def _fail(args: dict[str, Any]) -> None:
    raise VswitchError("port vm9: no such port")


def _crash(args: dict[str, Any]) -> None:
    raise RuntimeError("boom")


async def _async_echo(args: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"async": True, **args}


def make_server(path: str, **kwargs: Any) -> ControlServer:
    kwargs.setdefault("client_timeout_s", 0.5)
    server = ControlServer(path, **kwargs)
    server.register("echo", lambda args: args, "[ANY]", "Return the arguments")
    server.register("async-echo", _async_echo, "[ANY]", "Return the arguments, later")
    server.register("fail", _fail, "", "Always fails")
    server.register("crash", _crash, "", "Has a bug")
    server.register("bad-result", lambda args: {1, 2}, "", "Returns a set")
    return server


@pytest.fixture
async def server(sock_path: str) -> AsyncIterator[ControlServer]:
    srv = make_server(sock_path)
    await srv.start()
    yield srv
    await srv.stop()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: str) -> Client:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 5)
        assert line.endswith(b"\n"), f"no reply line, got {line!r}"
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def call(self, command: str, args: dict[str, Any] | None = None,
                   request_id: int = 1) -> dict[str, Any]:
        req = {"id": request_id, "command": command, "args": args or {}}
        await self.send(json.dumps(req).encode() + b"\n")
        return await self.reply()

    async def is_closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def call_once(path: str, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    client = await Client.connect(path)
    try:
        return await client.call(command, args)
    finally:
        await client.close()


async def test_request_reply_round_trip_echoes_id_and_result(server: ControlServer) -> None:
    client = await Client.connect(server.path)
    reply = await client.call("echo", {"vlan": 10, "port": None}, request_id=42)
    assert reply == {"id": 42, "ok": True, "result": {"vlan": 10, "port": None}}
    await client.close()


async def test_several_requests_on_one_connection_are_answered_in_order(
    server: ControlServer,
) -> None:
    client = await Client.connect(server.path)
    await client.send(b'{"id": 1, "command": "echo", "args": {"n": 1}}\n'
                      b'{"id": 2, "command": "async-echo", "args": {"n": 2}}\n')
    assert await client.reply() == {"id": 1, "ok": True, "result": {"n": 1}}
    assert await client.reply() == {"id": 2, "ok": True, "result": {"async": True, "n": 2}}
    await client.close()


async def test_args_may_be_omitted(server: ControlServer) -> None:
    client = await Client.connect(server.path)
    await client.send(b'{"id": 3, "command": "echo"}\n')
    assert await client.reply() == {"id": 3, "ok": True, "result": {}}
    await client.close()


async def test_unknown_command_reply_lists_known_commands(server: ControlServer) -> None:
    reply = await call_once(server.path, "fdb/shwo")
    assert reply["ok"] is False
    assert reply["error"] == (
        'unknown command "fdb/shwo"; known commands: async-echo, bad-result, crash, echo, '
        "fail, list-commands"
    )


async def test_malformed_json_gets_error_reply_and_connection_stays_usable(
    server: ControlServer,
) -> None:
    client = await Client.connect(server.path)
    await client.send(b'{"id": 1, "command": \n')
    reply = await client.reply()
    assert reply["ok"] is False and reply["id"] is None
    assert reply["error"].startswith("malformed request: invalid JSON")
    assert (await client.call("echo", {"x": 1}))["ok"] is True
    await client.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"id": 7, "args": {}}\n', 'malformed request: missing "command"'),
        (b'[1, 2]\n', "malformed request: expected a JSON object"),
        (b'{"id": 7, "command": "echo", "args": [1]}\n',
         'malformed request: "args" must be a JSON object'),
        (b'\xff\xfe\n', "malformed request: not valid UTF-8"),
    ],
)
async def test_request_with_bad_shape_gets_error_naming_the_problem(
    server: ControlServer, line: bytes, message: str
) -> None:
    client = await Client.connect(server.path)
    await client.send(line)
    reply = await client.reply()
    assert reply["ok"] is False
    assert reply["error"] == message
    await client.close()


async def test_oversized_request_is_rejected_and_connection_closed(
    server: ControlServer,
) -> None:
    client = await Client.connect(server.path)
    await client.send(b'{"id": 1, "command": "echo", "args": {"x": "'
                      + b"a" * MAX_REQUEST_BYTES + b'"}}\n')
    reply = await client.reply()
    assert reply["ok"] is False
    assert reply["error"] == "request too long (limit 65536 bytes per line)"
    assert await client.is_closed_by_server()
    await client.close()


async def test_handler_vswitcherror_becomes_error_reply_with_its_message(
    server: ControlServer,
) -> None:
    reply = await call_once(server.path, "fail")
    assert reply == {"id": 1, "ok": False, "error": "port vm9: no such port"}


async def test_handler_crash_is_internal_error_and_server_keeps_serving(
    server: ControlServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = await Client.connect(server.path)
    with caplog.at_level(logging.ERROR, logger="vswitchd.control"):
        reply = await client.call("crash")
    assert reply == {"id": 1, "ok": False, "error": "internal error: RuntimeError: boom"}
    assert any(r.exc_info and "crash" in r.getMessage() for r in caplog.records)
    assert (await client.call("echo", {"after": True}))["result"] == {"after": True}
    await client.close()
    assert (await call_once(server.path, "echo"))["ok"] is True


async def test_result_that_is_not_json_is_internal_error(server: ControlServer) -> None:
    reply = await call_once(server.path, "bad-result")
    assert reply["ok"] is False
    assert reply["error"].startswith("internal error: TypeError:")


async def test_list_commands_returns_usage_and_help_sorted_by_name(
    server: ControlServer,
) -> None:
    result = (await call_once(server.path, "list-commands"))["result"]
    assert [c["name"] for c in result] == [
        "async-echo", "bad-result", "crash", "echo", "fail", "list-commands"]
    assert {"name": "echo", "usage": "[ANY]", "help": "Return the arguments"} in result


def test_registering_a_command_twice_is_a_bug(sock_path: str) -> None:
    server = make_server(sock_path)
    with pytest.raises(ValueError):
        server.register("echo", lambda args: None, "", "")


async def test_stalled_client_does_not_block_another_client(server: ControlServer) -> None:
    stalled = await Client.connect(server.path)
    await stalled.send(b'{"id": 1, "command": "ec')
    reply = await asyncio.wait_for(call_once(server.path, "echo", {"x": 1}), 0.3)
    assert reply["result"] == {"x": 1}
    await stalled.close()


async def test_stalled_client_is_disconnected_after_timeout(server: ControlServer) -> None:
    stalled = await Client.connect(server.path)
    await stalled.send(b'{"id": 1, "command": "ec')
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await stalled.is_closed_by_server()
    assert 0.4 <= loop.time() - started < 3
    await stalled.close()


async def test_connections_beyond_the_cap_are_refused_with_a_reply(sock_path: str) -> None:
    server = make_server(sock_path, max_clients=2)
    await server.start()
    held = [await Client.connect(sock_path) for _ in range(2)]
    for c in held:  # make sure both are being served before the third arrives
        assert (await c.call("echo"))["ok"]
    extra = await Client.connect(sock_path)
    reply = await extra.reply()
    assert reply["ok"] is False and "too many management connections" in reply["error"]
    for c in [*held, extra]:
        await c.close()
    await server.stop()


async def test_socket_file_mode_is_0660_by_default(server: ControlServer) -> None:
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


async def test_socket_file_mode_and_group_are_configurable(sock_path: str) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    server = make_server(sock_path, mode=0o600, group=group)
    await server.start()
    st = os.stat(sock_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_gid == os.getgid()
    await server.stop()


async def test_unknown_group_is_rejected_before_binding(sock_path: str) -> None:
    server = make_server(sock_path, group="no-such-group-vsw")
    with pytest.raises(VswitchError) as exc:
        await server.start()
    assert str(exc.value) == (
        'management.socket_group: group "no-such-group-vsw" does not exist')
    assert not os.path.exists(sock_path)


async def test_start_creates_missing_parent_directory(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "run", "vswitchd.sock")
    server = make_server(path)
    await server.start()
    assert (await call_once(path, "echo"))["ok"]
    await server.stop()


async def test_stop_removes_socket_file_and_closes_clients(server: ControlServer) -> None:
    client = await Client.connect(server.path)
    assert (await client.call("echo"))["ok"]
    await server.stop()
    assert not os.path.exists(server.path)
    assert await client.is_closed_by_server()
    await client.close()


async def test_server_restarts_on_the_same_path_after_stop(sock_path: str) -> None:
    server = make_server(sock_path)
    await server.start()
    await server.stop()
    await server.start()
    assert (await call_once(sock_path, "echo"))["ok"]
    await server.stop()


async def test_second_server_on_same_path_refuses_to_start(server: ControlServer) -> None:
    second = make_server(server.path)
    with pytest.raises(VswitchError) as exc:
        await second.start()
    assert str(exc.value) == (
        f"management.socket: {server.path} is in use by a running vswitchd")
    assert (await call_once(server.path, "echo"))["ok"]


async def test_stale_socket_file_is_replaced(sock_path: str) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()  # the file stays, nobody listens: what a crashed daemon leaves
    server = make_server(sock_path)
    await server.start()
    assert (await call_once(sock_path, "echo"))["ok"]
    await server.stop()


async def test_start_refuses_a_path_that_is_not_a_socket(sock_path: str) -> None:
    with open(sock_path, "w") as f:
        f.write("precious")
    with pytest.raises(VswitchError, match="exists and is not a socket"):
        await make_server(sock_path).start()
    with open(sock_path) as f:
        assert f.read() == "precious"


async def test_stop_leaves_a_socket_that_replaced_ours_alone(server: ControlServer) -> None:
    os.unlink(server.path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(server.path)
    await server.stop()
    assert os.path.exists(server.path)
    other.close()


async def test_handler_may_stop_the_server_and_still_reply(sock_path: str) -> None:
    server = make_server(sock_path)

    async def exit_handler(args: dict[str, Any]) -> dict[str, str]:
        await server.stop()
        return {"message": "bye"}

    server.register("exit", exit_handler, "", "Stop serving")
    await server.start()
    client = await Client.connect(sock_path)
    assert await asyncio.wait_for(client.call("exit"), 5) == {
        "id": 1, "ok": True, "result": {"message": "bye"}}
    assert not os.path.exists(sock_path)
    await client.close()
