"""The one module that talks to libpcap: tcpdump filter text -> classic BPF.

``compile_filter("icmp and host 10.0.0.1")`` runs libpcap's own
``pcap_compile()`` (through ctypes, for Ethernet frames: DLT_EN10MB) and
returns the program as (code, jt, jf, k) tuples, which the workers run with
their own interpreter (csrc/vs_capture.c).  A filter libpcap refuses raises
VswitchError with libpcap's message.  Not thread-safe (pcap_compile() of
older libpcaps is not): call it from the event loop only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from vswitchd.errors import VswitchError

DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


@functools.cache
def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise VswitchError(f"--filter needs libpcap ({name}): {exc}") from None
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def compile_filter(expr: str, snaplen: int = 262144) -> list[tuple[int, int, int, int]]:
    """Compiles tcpdump filter ``expr`` for Ethernet frames of up to
    ``snaplen`` bytes."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    if not handle:
        raise VswitchError("libpcap: pcap_open_dead failed")
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) != 0:
            msg = (lib.pcap_geterr(handle) or b"cannot compile").decode(errors="replace")
            raise VswitchError(f"--filter: {msg}")
        out = [(prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf,
                prog.bf_insns[i].k) for i in range(prog.bf_len)]
        lib.pcap_freecode(ctypes.byref(prog))
        return out
    finally:
        lib.pcap_close(handle)
