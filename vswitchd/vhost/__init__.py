"""The vhost-user backend protocol (QEMU docs/interop/vhost-user.rst).

messages.py encodes and decodes the socket's messages (and the fds that
ride with them); session.py is one front end's connection as a state
machine that yields a `Device` (memory table, rings) whenever the set of
running queues changes.  Only vswitchd/ports/vhostuser.py uses them: the
rest of the daemon never sees a raw message.
"""
