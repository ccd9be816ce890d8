# budget-gateway: build, test, install, demo and benchmarks.
#
#   make demo      the main job: the seed scenario end to end (installs missing packages as root)
#   make test      the test suite (what CI runs)
#   make deps      install the Debian and Python packages the tests need (as root), else print the command
#   make build     release binaries in .build/release
#   make install   binaries, systemd units, sysusers file and man pages under $(DESTDIR)$(PREFIX)
#   make bench     the benchmarks (see bench/)

SWIFT   ?= swift
CONFIG  ?= release
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR      ?= $(PREFIX)/bin
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MANDIR      ?= $(PREFIX)/share/man

PROGRAMS := budgetctl budget-controld budget-proxyd bedrock-emulator
# Debian packages the build, the tests and the demo use.
APT_PACKAGES := curl mandoc libsqlite3-dev libsystemd-dev systemd wrk nginx
# Python packages the interop tests use.
PIP_REQUIREMENTS := Tests/interop/requirements.txt

.PHONY: all build test deps install demo bench clean

all: build

build:
	for program in $(PROGRAMS); do $(SWIFT) build -c $(CONFIG) --product $$program || exit 1; done

test:
	$(SWIFT) build --build-tests
	$(SWIFT) test
	BUDGET_BIN_DIR="$$($(SWIFT) build --show-bin-path)" python3 -m pytest -q Tests/interop

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || printf '%s ' $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get -o DPkg::Lock::Timeout=300 update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $$missing; \
	else \
		echo "missing Debian packages; run: sudo apt-get install -y $$missing"; exit 1; \
	fi
	@if [ -s $(PIP_REQUIREMENTS) ]; then python3 -m pip install -q -r $(PIP_REQUIREMENTS); fi

install: build
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(SYSUSERSDIR)"
	bin="$$($(SWIFT) build -c $(CONFIG) --show-bin-path)"; \
	for program in $(PROGRAMS); do install -m 0755 "$$bin/$$program" "$(DESTDIR)$(BINDIR)/$$program"; done
	for unit in systemd/*.socket systemd/*.service; do \
		sed 's|@bindir@|$(BINDIR)|g' "$$unit" > "$(DESTDIR)$(UNITDIR)/$$(basename $$unit)"; \
		chmod 0644 "$(DESTDIR)$(UNITDIR)/$$(basename $$unit)"; \
	done
	install -m 0644 systemd/budget.sysusers "$(DESTDIR)$(SYSUSERSDIR)/budget.conf"
	for page in man/*.[1-8]; do \
		section=$${page##*.}; install -d "$(DESTDIR)$(MANDIR)/man$$section"; \
		install -m 0644 "$$page" "$(DESTDIR)$(MANDIR)/man$$section/"; \
	done

demo:
	@$(MAKE) --no-print-directory deps-demo
	CONFIG=$(CONFIG) scripts/demo.sh

# The demo needs only curl (and a C toolchain's usual libraries to build).
deps-demo:
	@missing=$$(for p in curl libsqlite3-dev libsystemd-dev; do dpkg -s $$p >/dev/null 2>&1 || printf '%s ' $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get -o DPkg::Lock::Timeout=300 update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $$missing; \
	else \
		echo "missing Debian packages; run: sudo apt-get install -y $$missing"; exit 1; \
	fi

bench:
	@$(MAKE) --no-print-directory deps
	bench/macro.sh
	bench/emulator-throughput.sh
	bench/control-throughput.sh
	bench/scale.sh
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark

clean:
	rm -rf .build
