"""Values of the C counter enum (VS_C_*) for tests of the C functions that
return drop reasons: from the cffi module when it exports them, otherwise
read from the X-macro in csrc/vs_counters.h (same order as the enum)."""

from __future__ import annotations

import pathlib
import re

from vswitchd._fastpath import lib

COUNTERS_H = pathlib.Path(__file__).resolve().parents[2] / "csrc" / "vs_counters.h"


def reason(name: str) -> int:
    """Value of VS_C_<name>, e.g. reason("DROP_RUNT")."""
    value = getattr(lib, "VS_C_" + name, None)
    if value is not None:
        return value
    names = re.findall(r"^\s*X\((\w+),", COUNTERS_H.read_text(), re.M)
    return names.index(name)
