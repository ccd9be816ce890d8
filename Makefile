# budget-gateway: build, test, install, demo and benchmarks.
#
#   make demo      the main job: the seed scenario end to end
#   make test      the test suite (what CI runs)
#   make deps      only the set-up of make test: the Debian and Python packages the tests need
#   make build     release binaries in .build/release
#   make install   binaries, systemd units, sysusers file and man pages under $(DESTDIR)$(PREFIX)
#   make bench     the benchmarks (see bench/)
#   make soak      a fault soak of SOAK_SECONDS (default 300) that checks the budget invariants (bench/soak.py)
#
# demo, test, bench and soak set themselves up first (scripts/deps.sh): run as root they install what is missing;
# otherwise they print the commands that would and stop.

SWIFT   ?= swift
CONFIG  ?= release
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR      ?= $(PREFIX)/bin
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MANDIR      ?= $(PREFIX)/share/man

PROGRAMS := budgetctl budget-controld budget-proxyd bedrock-emulator

.PHONY: all build test deps deps-demo install demo bench soak clean

all: build

build:
	for program in $(PROGRAMS); do $(SWIFT) build -c $(CONFIG) --product $$program || exit 1; done

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test
	BUDGET_BIN_DIR="$$($(SWIFT) build --show-bin-path)" python3 -m pytest -q Tests/interop

# The Debian packages in scripts/deps.sh and the Python packages in Tests/interop/requirements.txt.
deps:
	@scripts/deps.sh test

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

demo: deps-demo
	CONFIG=$(CONFIG) scripts/demo.sh

# The demo needs only curl (and a C toolchain's usual libraries to build).
deps-demo:
	@scripts/deps.sh demo

# Every script appends its figures to one file ($BENCH_ROWS), and bench/summary.py prints them as one table,
# each next to its baseline from the same run or its target (bench/results/summary-*.md).
bench: deps
	rows=$$(mktemp) && export BENCH_ROWS=$$rows && \
	bench/macro.sh && bench/emulator-throughput.sh && bench/control-throughput.sh && bench/fleet.sh && \
	bench/scale.sh && (cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark) && \
	python3 bench/summary.py $$rows bench/results/summary-$$(date -u +%Y%m%dT%H%M%SZ).md

# The soak runs the debug build by default (the one make test builds; its overflow checks and assertions
# are on): SOAK_CONFIG=release for the release build.
SOAK_SECONDS ?= 300
SOAK_CONFIG  ?= debug

soak: deps
	for program in $(PROGRAMS); do $(SWIFT) build -c $(SOAK_CONFIG) --product $$program || exit 1; done
	BUDGET_BIN_DIR="$$($(SWIFT) build -c $(SOAK_CONFIG) --show-bin-path)" python3 bench/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf .build
