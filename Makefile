# vswitchd developer targets.  `make help` lists them.
#
# Everything runs from a virtualenv in .venv; `make run` and `make test` set
# up what they need on a fresh machine (Debian packages, the venv, the C
# fast path) and are safe to re-run.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/vswitchd.toml
PYTEST_ARGS ?=
BENCH_ARGS ?=
PREFIX ?= /opt/vswitchd

# Tools the tests and benchmarks drive for real.
# libpcap0.8: `vswitchctl capture --filter` compiles filters with libpcap (ctypes).
# nftables: the bridge + nftables rows of `make bench`.
# gobgpd and golang-github-osrg-gobgp-dev: the EVPN control plane and the
# .proto files its Python stubs are generated from (vswitchd/gobgp_build.py);
# frr: the other side of the EVPN interop test.
# qemu-system-x86, libvirt-daemon-system, libvirt-clients: the real-VM tests
# (tests/vm); the guests' kernel and busybox are fetched by `apt-get download`
# into a cache, never installed (tests/vm/image.py).
APT_PACKAGES := iproute2 iputils-ping iperf3 ethtool tcpdump netsniff-ng gcc clang \
                libclang-rt-14-dev prometheus libpcap0.8 libpcap-dev nftables gobgpd \
                golang-github-osrg-gobgp-dev frr qemu-system-x86 libvirt-daemon-system \
                libvirt-clients
APT_TOOLS := ip ping iperf3 ethtool tcpdump trafgen gcc clang promtool nft gobgpd vtysh \
             qemu-system-x86_64 libvirtd virsh
# dpdk-dev ships dpdk-testpmd: the virtio_user guest of the vhost-user tests, the
# real back end the test front end (tests/vhostuser) is checked against, and the
# load generator of the vhost bench rows.
APT_PACKAGES += dpdk-dev
APT_TOOLS += dpdk-testpmd

C_SOURCES := $(wildcard csrc/*.c csrc/*.h csrc/cdef/*.h) csrc/build_fastpath.py
FASTPATH := vswitchd/_fastpath.cpython-311-x86_64-linux-gnu.so
GOBGP_PROTO_DIR ?= /usr/share/gocode/src/github.com/osrg/gobgp/api
GOBGP_STUBS := vswitchd/_gobgp/gobgp_pb2.py

ACL_BENCH := build/acl_bench
ACL_BENCH_SRC := bench/acl_bench.c csrc/vs_acl.c csrc/vs_acl_key.c
ACL_BENCH_ARGS ?=

.PHONY: help deps venv build run test test-unit test-e2e vmtest lint asan fuzz bench acl-bench soak \
        install clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps:  ## install the Debian packages tests and benchmarks use (only if missing)
	@missing=""; for t in $(APT_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing packages for:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed  ## create the virtualenv and install the package with test tools

$(FASTPATH): $(VENV)/.installed $(C_SOURCES)
	$(PY) csrc/build_fastpath.py

# Generated from Debian's .proto files, never copied into the project.  On a
# machine without them (no `make deps` yet) the stubs are skipped: only the
# GoBGP client (vswitchd/gobgp.py) needs them.
$(GOBGP_STUBS): $(VENV)/.installed vswitchd/gobgp_build.py
	@if [ -d $(GOBGP_PROTO_DIR) ]; then $(PY) -m vswitchd.gobgp_build $(GOBGP_PROTO_DIR); \
	else echo "no $(GOBGP_PROTO_DIR): GoBGP stubs not generated (make deps)"; fi

build: $(FASTPATH) $(GOBGP_STUBS)  ## compile the C fast path in place, generate the GoBGP stubs

run: deps build  ## start the daemon in the foreground on configs/vswitchd.toml (root)
	$(VENV)/bin/vswitchd --config $(CONFIG)

test: deps build  ## run every test (unit, then end to end with namespaces; needs root)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: build  ## run the tests that need no root
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-e2e: deps build  ## run the end-to-end tests (root, namespaces, TAPs)
	$(PY) -m pytest -q tests/e2e $(PYTEST_ARGS)

vmtest: deps build  ## the tests with real QEMU guests and real libvirt (tests/vm, root)
	$(PY) -m pytest -q tests/vm $(PYTEST_ARGS)

lint: venv  ## ruff and mypy
	$(VENV)/bin/ruff check vswitchd tests bench
	$(VENV)/bin/mypy vswitchd

asan: venv  ## unit tests against a fast path built with AddressSanitizer + UBSan
	VS_FASTPATH_SANITIZE=1 $(PY) csrc/build_fastpath.py
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	  UBSAN_OPTIONS=halt_on_error=1 $(PY) -m pytest -q tests/unit $(PYTEST_ARGS); \
	  rc=$$?; rm -f $(FASTPATH); $(MAKE) build; exit $$rc

fuzz: deps  ## libFuzzer on the frame path, the GSO code and the vhost rings, 10 min each (tests/fuzz)
	tests/fuzz/run.sh all $${FUZZ_S:-600}

soak: deps build  ## a long soak: traffic while ports churn, then check for leaks (SOAK_S=600)
	VS_SOAK_S=$${SOAK_S:-600} $(PY) -m pytest -q -s tests/e2e/test_soak.py

bench: deps build $(ACL_BENCH)  ## the ACL micro-benchmark, then vs the Linux bridge and Open vSwitch (root, ~25 min)
	$(ACL_BENCH) $(ACL_BENCH_ARGS)
	$(PY) bench/run.py $(BENCH_ARGS)

$(ACL_BENCH): $(ACL_BENCH_SRC) csrc/vs_acl.h csrc/vs_frame.h csrc/vs_hash.h
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Icsrc -o $@ $(ACL_BENCH_SRC)

acl-bench: $(ACL_BENCH)  ## ns per classified frame in the ACL classifier, 10-10,000 rules (seconds, no root)
	$(ACL_BENCH) $(ACL_BENCH_ARGS)

install: deps  ## install to $(PREFIX), the unit to systemd, the config to /etc/vswitchd
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install -q .
	ln -sf $(PREFIX)/bin/vswitchd /usr/local/bin/vswitchd
	ln -sf $(PREFIX)/bin/vswitchctl /usr/local/bin/vswitchctl
	for s in vswitchd-libvirt-hook vswitchd-qemu-ifup vswitchd-qemu-ifdown; do \
	  ln -sf $(PREFIX)/bin/$$s /usr/local/bin/$$s; done
	@# libvirt's qemu hook: ours, unless the host has one of its own (then call
	@# ours from it, passing stdin along: docs/vms.md).
	install -d -m 0755 /etc/libvirt/hooks
	@if [ ! -e /etc/libvirt/hooks/qemu ] || [ "$$(readlink /etc/libvirt/hooks/qemu)" = "$(PREFIX)/bin/vswitchd-libvirt-hook" ]; then \
	  ln -sf $(PREFIX)/bin/vswitchd-libvirt-hook /etc/libvirt/hooks/qemu; \
	  echo "libvirt hook installed as /etc/libvirt/hooks/qemu (restart libvirtd to load it)"; \
	else echo "/etc/libvirt/hooks/qemu exists: add  $(PREFIX)/bin/vswitchd-libvirt-hook \"\$$@\"  to it (docs/vms.md)"; fi
	install -D -m 0644 systemd/vswitchd.service /etc/systemd/system/vswitchd.service
	install -d -m 0755 /etc/vswitchd
	[ -e /etc/vswitchd/vswitchd.toml ] || install -m 0644 configs/vswitchd.toml /etc/vswitchd/vswitchd.toml
	@echo "installed; enable with: systemctl daemon-reload && systemctl enable --now vswitchd"

clean:  ## remove build products (not the virtualenv)
	rm -rf build dist *.egg-info vswitchd/_fastpath* csrc/*.o
