"""Writes seed inputs for fuzz_vhost (see its header for the layout): guest
memory holding well-formed virtqueues, so the fuzzer starts from rings
that work and mutates them into hostile ones."""

from __future__ import annotations

import pathlib
import struct
import sys

GPA = 0x10000000
MEM = 64 * 1024
DATA = 32 * 1024          # frames and buffers live from here on


def image(features: int, log2: int, n_rx: int, indirect: bool) -> bytes:
    num = 1 << (1 + log2)
    mem = bytearray(MEM)
    # Guest TX queue (vring 1): three frames, the second in two pieces or
    # through an indirect table.
    tx = 16384
    frames = [bytes(12) + bytes(range(60)), bytes(12) + b"\xff" * 100, bytes(12) + b"\x01" * 64]
    off = DATA
    heads = []
    d = 0
    for i, f in enumerate(frames):
        mem[off:off + len(f)] = f
        if i == 1 and indirect:
            table = off + 2048
            struct.pack_into("=QIHH", mem, table, GPA + off, 12, 1, 1)
            struct.pack_into("=QIHH", mem, table + 16, GPA + off + 12, len(f) - 12, 0, 0)
            struct.pack_into("=QIHH", mem, tx + 16 * d, GPA + table, 32, 4, 0)
        elif i == 1:
            struct.pack_into("=QIHH", mem, tx + 16 * d, GPA + off, 12, 1, d + 1)
            struct.pack_into("=QIHH", mem, tx + 16 * (d + 1), GPA + off + 12, len(f) - 12, 0, 0)
            heads.append(d)
            d += 2
            off += 4096
            continue
        else:
            struct.pack_into("=QIHH", mem, tx + 16 * d, GPA + off, len(f), 0, 0)
        heads.append(d)
        d += 1
        off += 4096
    heads = [h % num for h in heads][:num]
    for i, h in enumerate(heads):
        struct.pack_into("=H", mem, tx + 4096 + 4 + 2 * i, h)
    struct.pack_into("=HH", mem, tx + 4096, 0, len(heads))
    # Guest RX queue (vring 0): n_rx writable 2 KiB buffers.
    for i in range(min(num, 4)):
        struct.pack_into("=QIHH", mem, 16 * i, GPA + DATA + 16384 + 2048 * i, 2048, 2, 0)
        struct.pack_into("=H", mem, 4096 + 4 + 2 * i, i)
    struct.pack_into("=HH", mem, 4096, 0, min(num, 4))
    return bytes([features, log2, n_rx]) + bytes(mem).rstrip(b"\0")


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (feat, log2, n_rx, ind) in enumerate([
            (0x8 | 0x1, 7, 3, False), (0x8 | 0x4, 7, 2, True), (0x0, 2, 1, False),
            (0xF, 1, 5, True), (0x8 | 0x2, 3, 4, False)]):
        (out / f"seed-{i}").write_bytes(image(feat, log2, n_rx, ind))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
