"""Guest images for the real-VM tests: a Debian kernel and a busybox initramfs.

Everything comes from Debian packages fetched with `apt-get download` and
unpacked with `dpkg-deb -x` into a cache directory: nothing is installed on
the host.  The guest gets
- the kernel of `linux-image-amd64` and the virtio-net modules it builds as
  modules (MODULES, loaded by /init in that order),
- busybox-static as its userland, /init from guest_init.sh beside this file,
- iperf3 and nstat with the shared libraries they need and the dynamic
  loader, found by reading each ELF's DT_NEEDED entries (`readelf -d`) and
  looked up in the unpacked packages (LIBRARY_PACKAGES), never the host's.

The result is kept under $VS_VM_CACHE (default /var/cache/vswitchd-vm, so
that every checkout and CI run on this machine shares it, and so that
libvirt's QEMU user can read it) in a directory named after a hash of the
package versions, this file and the init script: built once, reused until a
package or the recipe changes.  Concurrent builders serialise on a lock file
and publish with an atomic rename.

`python -m tests.vm.image` builds (or finds) the image and prints its paths.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import lzma
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "guest_init.sh"
DEFAULT_CACHE = Path("/var/cache/vswitchd-vm")
KERNEL_META = "linux-image-amd64"

# What virtio-net needs beyond the kernel's built-ins, dependencies first
# (Debian ships no modules.dep in the package: depmod makes it on install).
MODULES = ("failover", "net_failover", "virtio_ring", "virtio", "virtio_pci_legacy_dev",
           "virtio_pci_modern_dev", "virtio_pci", "virtio_net")
# Dynamically linked programs copied into the guest, as paths in the packages.
BINARIES = ("usr/bin/iperf3", "usr/bin/nstat")
USERLAND_PACKAGES = ("busybox-static", "iperf3", "libiperf0", "iproute2")
# Where the libraries BINARIES need come from (DT_NEEDED, transitively).
LIBRARY_PACKAGES = ("libc6", "libssl3", "libsctp1", "libbsd0", "libmnl0", "libcap2", "libmd0")
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64")
LOADER = "ld-linux-x86-64.so.2"


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    kernel_version: str


def cache_dir() -> Path:
    return Path(os.environ.get("VS_VM_CACHE", str(DEFAULT_CACHE)))


def _apt_show(names: list[str]) -> dict[str, dict[str, str]]:
    """`apt-cache show` of the candidate versions: package -> {field: value}."""
    cmd = ["apt-cache", "show", "--no-all-versions", *names]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:       # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out: dict[str, dict[str, str]] = {}
    for stanza in r.stdout.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.MULTILINE))
        if "Package" in fields:
            out[fields["Package"]] = fields
    return out


def kernel_package() -> str:
    """The versioned kernel package the `linux-image-amd64` metapackage names."""
    depends = _apt_show([KERNEL_META])[KERNEL_META].get("Depends", "")
    m = re.search(r"(linux-image-[0-9][^ ,]*-amd64)", depends)
    if m is None:
        raise RuntimeError(f"{KERNEL_META} depends on no kernel: {depends}")
    return m.group(1)


def packages() -> dict[str, str]:
    """Every package the image is made of -> its candidate version."""
    names = [kernel_package(), *USERLAND_PACKAGES, *LIBRARY_PACKAGES]
    shown = _apt_show(names)
    missing = [n for n in names if n not in shown]
    if missing:
        raise RuntimeError(f"apt-cache knows no {', '.join(missing)}")
    return {name: shown[name]["Version"] for name in names}


def image_key(versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(versions):
        h.update(f"{name}={versions[name]}\n".encode())
    h.update(Path(__file__).read_bytes())
    h.update(INIT_SCRIPT.read_bytes())
    return h.hexdigest()[:16]


def build_image() -> GuestImage:
    """The cached image for the current package versions, built if missing."""
    versions = packages()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o755)
    final = cache / image_key(versions)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # another helper may be building it
        if not (final / "initrd.gz").exists():
            work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
            try:
                _build(work, versions)
                os.chmod(work, 0o755)
                shutil.rmtree(work / "debs")
                shutil.rmtree(work / "root")
                shutil.rmtree(work / "initramfs")
                os.rename(work, final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return GuestImage(kernel=final / "vmlinuz", initrd=final / "initrd.gz",
                      kernel_version=(final / "kernel-version").read_text().strip())


def _download(debs: Path, versions: dict[str, str]) -> None:
    wanted = [f"{name}={version}" for name, version in versions.items()]
    cmd = ["apt-get", "download", "-q", *wanted]
    r = subprocess.run(cmd, cwd=debs, capture_output=True, text=True)
    if r.returncode != 0:
        # Stale package lists point at files the mirror no longer has.
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        r = subprocess.run(cmd, cwd=debs, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"apt-get download failed: {r.stderr.strip()}")


def _build(work: Path, versions: dict[str, str]) -> None:
    debs, root, fs = work / "debs", work / "root", work / "initramfs"
    for d in (debs, root, fs):
        d.mkdir()
    _download(debs, versions)
    for deb in sorted(debs.glob("*.deb")):
        if deb.name.startswith("linux-image-"):
            _extract_kernel(deb, root)
        else:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)

    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise RuntimeError("no boot/vmlinuz-* in the kernel package")
    kver = vmlinuz[-1].name.removeprefix("vmlinuz-")
    shutil.copyfile(vmlinuz[-1], work / "vmlinuz")
    (work / "kernel-version").write_text(kver + "\n")

    for d in ("bin", "etc", "lib/modules", "lib64", "usr/bin", "lib/x86_64-linux-gnu"):
        (fs / d).mkdir(parents=True, exist_ok=True)
    _install(root / "bin/busybox", fs / "bin/busybox", 0o755)
    _install(INIT_SCRIPT, fs / "init", 0o755)
    (fs / "etc/modules.order").write_text("\n".join(_copy_modules(root, fs, kver)) + "\n")
    (fs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (fs / "etc/group").write_text("root:x:0:\n")
    _copy_programs(root, fs)
    _write_cpio_gz(fs, work / "initrd.gz")
    for f in ("vmlinuz", "initrd.gz", "kernel-version"):
        os.chmod(work / f, 0o644)


def _extract_kernel(deb: Path, root: Path) -> None:
    """Only the kernel and MODULES out of the ~400 MB kernel package (`dpkg-deb -x`
    of all of it takes half a minute here)."""
    names = {f"{m}.ko" for m in MODULES} | {f"{m}.ko.xz" for m in MODULES}

    def wanted(path: str) -> bool:
        base = path.rsplit("/", 1)[-1]
        return (path.startswith("./boot/vmlinuz-") or base == "modules.builtin"
                or (path.startswith("./lib/modules/") and base in names))

    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if member.isfile() and wanted(member.name):
                tar.extract(member, root, filter="data")
    if proc.wait() != 0:
        raise RuntimeError(f"dpkg-deb --fsys-tarfile {deb.name} exited {proc.returncode}")


def _install(src: Path, dst: Path, mode: int) -> None:
    shutil.copyfile(src, dst)
    os.chmod(dst, mode)


def _copy_modules(root: Path, fs: Path, kver: str) -> list[str]:
    """Copy MODULES (decompressed) into /lib/modules; returns the ones found."""
    tree = root / "lib/modules" / kver / "kernel"
    found: list[str] = []
    for name in MODULES:
        hits = [p for p in tree.rglob(f"{name}.ko*")
                if p.name in (f"{name}.ko", f"{name}.ko.xz")]
        if not hits:
            continue        # built into the kernel
        data = hits[0].read_bytes()
        if hits[0].name.endswith(".xz"):
            data = lzma.decompress(data)    # busybox insmod takes plain ELF
        (fs / "lib/modules" / f"{name}.ko").write_bytes(data)
        found.append(name)
    if "virtio_net" not in found and not _builtin(root, kver, "virtio_net"):
        raise RuntimeError("virtio_net is neither a module nor built in")
    return found


def _builtin(root: Path, kver: str, name: str) -> bool:
    builtin = root / "lib/modules" / kver / "modules.builtin"
    return builtin.exists() and f"/{name}.ko" in builtin.read_text()


def _needed(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _find_lib(root: Path, soname: str) -> Path:
    for d in LIB_DIRS:
        p = root / d / soname
        if p.exists():
            return p.resolve()
    raise RuntimeError(f"{soname} is in none of the unpacked packages "
                       f"(add its package to LIBRARY_PACKAGES)")


def _copy_programs(root: Path, fs: Path) -> None:
    pending = [root / b for b in BINARIES]
    for b in BINARIES:
        _install(root / b, fs / b, 0o755)
    seen: set[str] = set()
    while pending:
        for soname in _needed(pending.pop()):
            if soname in seen:
                continue
            seen.add(soname)
            lib = _find_lib(root, soname)
            _install(lib, fs / "lib/x86_64-linux-gnu" / soname, 0o755)
            pending.append(lib)
    # Programs ask for the loader by its absolute path /lib64/ld-linux-x86-64.so.2.
    _install(_find_lib(root, LOADER), fs / "lib64" / LOADER, 0o755)


def _write_cpio_gz(fs: Path, out: Path) -> None:
    """The tree as a newc cpio archive, gzipped (the kernel's initramfs format)."""
    entries: list[tuple[str, int, int, bytes]] = []   # name, mode, rdev(major, minor), data
    entries.append(("dev", stat.S_IFDIR | 0o755, 0, b""))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, (5 << 8) | 1, b""))
    for dirpath, dirnames, filenames in os.walk(fs):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, fs)
        for name in dirnames + sorted(filenames):
            path = Path(dirpath) / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append((rel, st.st_mode, 0, os.readlink(path).encode()))
            elif stat.S_ISDIR(st.st_mode):
                entries.append((rel, stat.S_IFDIR | 0o755, 0, b""))
            else:
                entries.append((rel, stat.S_IFREG | (st.st_mode & 0o777), 0, path.read_bytes()))
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        for ino, (name, mode, rdev, data) in enumerate(entries, start=1):
            _cpio_entry(f, ino, name, mode, rdev, data)
        _cpio_entry(f, 0, "TRAILER!!!", 0, 0, b"")


def _cpio_entry(f: gzip.GzipFile, ino: int, name: str, mode: int, rdev: int,
                data: bytes) -> None:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF,
              len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % v for v in fields)
    f.write(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
    f.write(data + b"\0" * (-len(data) % 4))


if __name__ == "__main__":
    img = build_image()
    print(f"kernel {img.kernel} ({img.kernel_version})\ninitrd {img.initrd}")
