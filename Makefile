# budget-gateway: build, test and install.
#
#   make test      the test suite (what CI runs)
#   make deps      install the Debian and Python packages the tests need (as root), else print the command
#   make build     release binaries in .build/release

SWIFT   ?= swift
PREFIX  ?= /usr/local
DESTDIR ?=

# Debian packages the build and the tests use.
APT_PACKAGES := curl mandoc libsqlite3-dev libsystemd-dev systemd
# Python packages the interop tests use.
PIP_REQUIREMENTS := Tests/interop/requirements.txt

.PHONY: all build test deps clean

all: build

build:
	$(SWIFT) build -c release

test:
	$(SWIFT) build --build-tests
	$(SWIFT) test
	BUDGET_BIN_DIR="$$($(SWIFT) build --show-bin-path)" python3 -m pytest -q Tests/interop

deps:
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	else \
		echo "run as root, or: sudo apt-get install -y $(APT_PACKAGES)"; \
	fi
	@if [ -s $(PIP_REQUIREMENTS) ]; then python3 -m pip install -q -r $(PIP_REQUIREMENTS); fi

clean:
	rm -rf .build
