"""A TCP endpoint a test drives line by line, run inside a namespace:

    python3 tcp_peer.py listen PORT         # accepts one connection
    python3 tcp_peer.py connect HOST PORT   # connects (exits 3 if it cannot in 3 s)

Then each line on stdin is sent to the other end; everything received is
printed as "got <bytes>" lines.  It prints "connected" once the connection is
up.  The test owns the process and kills it; it also exits when stdin closes.
"""

from __future__ import annotations

import selectors
import socket
import sys


def main() -> int:
    mode = sys.argv[1]
    if mode == "listen":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", int(sys.argv[2])))
        srv.listen(1)
        print("listening", flush=True)
        conn, _ = srv.accept()
    else:
        try:
            conn = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3)
        except OSError as exc:
            print(f"failed {exc}", flush=True)
            return 3
        conn.settimeout(None)
    print("connected", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is conn:
                data = conn.recv(65536)
                if not data:
                    print("closed", flush=True)
                    return 0
                print(f"got {data.decode(errors='replace').strip()}", flush=True)
            else:
                line = sys.stdin.readline()
                if not line:
                    return 0
                conn.sendall(line.encode())


if __name__ == "__main__":
    sys.exit(main())
