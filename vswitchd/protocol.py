"""Wire format of the management socket, shared by the daemon and vswitchctl.

A Unix stream socket carrying newline-delimited JSON, one object per line:

    request  {"id": 1, "command": "fdb/show", "args": {"vlan": 10, "port": null}}
    reply    {"id": 1, "ok": true, "result": [...]}
    reply    {"id": 1, "ok": false, "error": "one line message"}

A request line holds at most `MAX_REQUEST_BYTES` bytes before its newline.
Replies are encoded with `ensure_ascii`, so a reply is always a single line
however odd the strings inside it.  A connection may carry several requests;
the server answers them in order.  "id" is echoed back unchanged (null when
the request was too broken to have one); "args" may be omitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vswitchd.errors import VswitchError

DEFAULT_SOCKET = "/run/vswitchd/vswitchd.sock"
SOCKET_ENV = "VSWITCHD_SOCKET"

# Longest request line, newline excluded.  Requests are tiny; the bound keeps
# one client from making the daemon buffer without limit.
MAX_REQUEST_BYTES = 64 * 1024

RequestId = int | str | None


class ProtocolError(VswitchError):
    """A request or reply that does not follow the wire format."""


@dataclass(frozen=True)
class Request:
    id: RequestId
    command: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    id: RequestId
    ok: bool
    result: Any = None
    error: str = ""


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def encode_request(request: Request) -> bytes:
    obj = {"id": request.id, "command": request.command, "args": request.args}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Parse one request line; raises ProtocolError naming what is wrong."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("malformed request: not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise ProtocolError(f"malformed request: invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("malformed request: expected a JSON object")
    request_id = obj.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str | None):
        raise ProtocolError('malformed request: "id" must be an integer or a string')
    command = obj.get("command")
    if not isinstance(command, str) or not command:
        raise ProtocolError('malformed request: missing "command"')
    args = obj.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError('malformed request: "args" must be a JSON object')
    return Request(request_id, command, args)


def request_id_of(line: bytes) -> RequestId:
    """Best-effort id of a request that failed to decode, to echo it back."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    request_id = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    return request_id


def encode_ok(request_id: RequestId, result: Any) -> bytes:
    """Encode a success reply; raises TypeError/ValueError if `result` is not JSON."""
    obj = {"id": request_id, "ok": True, "result": result}
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def encode_error(request_id: RequestId, message: str) -> bytes:
    obj = {"id": request_id, "ok": False, "error": _one_line(message)}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode_reply(line: bytes) -> Reply:
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"malformed reply from vswitchd: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise ProtocolError("malformed reply from vswitchd: missing \"ok\"")
    if obj["ok"]:
        return Reply(obj.get("id"), True, result=obj.get("result"))
    return Reply(obj.get("id"), False, error=_one_line(str(obj.get("error", "unknown error"))))
