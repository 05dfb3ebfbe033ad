"""Fixtures for tests with real QEMU guests (and, in test_libvirt.py, real libvirt).

The guest image (tests/vm/image.py) is built once per machine and cached;
`guest_image` finds or builds it.  `guest` boots a QEMU guest that is always
stopped (by PID) after the test.  The namespace, interface and daemon
fixtures are the e2e ones.  Like every root test, these fail rather than
skip under CI=true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures used by the tests here
    daemon,
    ifname,
    netns,
    pytest_asyncio_loop_factories,
    require_root,
    veth,
)
from tests.vm.guest import Guest
from tests.vm.image import GuestImage, build_image


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    return build_image()


@pytest.fixture
def guest(guest_image: GuestImage, tmp_path: Path,
          require_root: None) -> Iterator[Callable[..., Guest]]:  # noqa: F811
    """Factory: `guest(nics=[...], ip="10.x.x.x/24", **kw)` boots a guest and
    waits for its console; every guest started is stopped after the test."""
    started: list[Guest] = []

    def make(nics: list[str], wait: bool = True, **kw) -> Guest:
        g = Guest(guest_image, tmp_path, nics, name=f"guest{len(started)}", **kw)
        started.append(g)
        return g.start(wait=wait)

    yield make
    for g in started:
        g.stop()
