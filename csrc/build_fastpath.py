"""cffi builder for the C fast path (out-of-line API mode).

`pip install .` runs this through setup.py's ``cffi_modules``; developers can
also run ``python csrc/build_fastpath.py`` to rebuild the extension in place
next to the ``vswitchd`` package.

The public API cffi sees is the concatenation of ``csrc/cdef/*.h`` (one file
per component, so components can be developed side by side); constants there
are written as ``...`` so the C compiler fills in their values.
"""

import os
import pathlib
import sys

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent

# VS_FASTPATH_SANITIZE=1 builds with AddressSanitizer and UBSan (make asan).
SANITIZE = os.environ.get("VS_FASTPATH_SANITIZE") == "1"


# VS_FASTPATH_ONLY=csum,gso builds only those components (vs_NAME.c and
# cdef/NAME.h): lets one component be tested while another is mid-edit.
ONLY = [n for n in os.environ.get("VS_FASTPATH_ONLY", "").split(",") if n]


def _cdef_text() -> str:
    parts = sorted((HERE / "cdef").glob("*.h"))
    if ONLY:
        parts = [p for p in parts if p.stem in ONLY]
    return "\n".join(p.read_text() for p in parts)


def _sources() -> list[str]:
    # Paths relative to the project root: setuptools wants them that way.
    root = HERE.parent
    files = sorted(HERE.glob("vs_*.c"))
    if ONLY:
        files = [p for p in files if p.stem[3:] in ONLY]
    return [str(p.relative_to(root)) for p in files]


def _compile_args() -> list[str]:
    args = ["-std=gnu11", "-O2", "-g", "-pthread", "-Wall", "-Wextra",
            "-Wno-unused-parameter", "-Werror=incompatible-pointer-types",
            "-fvisibility=hidden"]
    if SANITIZE:
        args += ["-O1", "-fno-omit-frame-pointer",
                 "-fsanitize=address,undefined"]
    return args


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "vswitchd._fastpath",
    '#include "vs_api.h"\n',
    sources=_sources(),
    include_dirs=[str(HERE)],
    extra_compile_args=_compile_args(),
    extra_link_args=["-pthread"] + (["-fsanitize=address,undefined"]
                                    if SANITIZE else []),
)

if __name__ == "__main__":
    # In-place developer build: vswitchd/_fastpath.*.so beside the package.
    os.chdir(HERE.parent)
    sys.exit(0 if ffibuilder.compile(verbose=False) else 1)
