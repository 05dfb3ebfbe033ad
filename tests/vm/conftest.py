"""Fixtures for tests with real QEMU guests (and, in test_libvirt.py, real libvirt).

The guest image (tests/vm/image.py) is built once per machine and cached;
`guest_image` finds or builds it.  `guest` boots a QEMU guest that is always
stopped (by PID) after the test.  The namespace, interface and daemon
fixtures are the e2e ones.  Like every root test, these fail rather than
skip under CI=true.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
from tests.vm.libvirt_env import Libvirt


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


@pytest.fixture(scope="session")
def libvirt() -> Iterator[Libvirt]:
    """One libvirtd (and virtlogd) for the whole session, with our hook."""
    # Session-scoped, so it checks root itself (require_root is per test).
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root (CI=true: refusing to skip)")
        pytest.skip("needs root")
    workdir = Path(tempfile.mkdtemp(prefix="vms-libvirt-"))
    lv = Libvirt(workdir)
    try:
        lv.start()
        yield lv
    finally:
        lv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
