#!/usr/bin/env bash
# What a make target needs from the machine: Debian packages, and (for the tests) the Python packages of
# Tests/interop/requirements.txt.
#
#   scripts/deps.sh test     what `make test` needs (and `make bench`)
#   scripts/deps.sh demo     what `make demo` needs
#
# Silent when all is there. As root it installs what is missing; otherwise it prints the commands to run and
# exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=Tests/interop/requirements.txt
case ${1:-} in
    test) apt_packages=(curl mandoc libsqlite3-dev libsystemd-dev systemd wrk nginx openssl redis-server redis-sentinel); python=yes ;;
    demo) apt_packages=(curl libsqlite3-dev libsystemd-dev); python=no ;;
    *) echo "usage: $0 test|demo" >&2; exit 2 ;;
esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }

missing_apt=()
need_pip=no  # yes: the requirements are not all met, or cannot be checked before python3 or pip is installed
if command -v dpkg-query >/dev/null; then
    for package in "${apt_packages[@]}"; do installed "$package" || missing_apt+=("$package"); done
    if ! command -v python3 >/dev/null; then  # the demo reads replies with it too
        missing_apt+=(python3)
        [ "$python" = no ] || { missing_apt+=(python3-pip); need_pip=yes; }
    elif [ "$python" = yes ]; then
        if ! python3 -m pip --version >/dev/null 2>&1; then
            missing_apt+=(python3-pip)
            need_pip=yes
        fi
    fi
else
    echo "not a Debian machine: make sure these (or your system's equivalents) are installed: ${apt_packages[*]}" >&2
fi

# The requirements ("name>=version" lines) that the python3 on PATH does not meet.
missing_pip=()
if [ "$python" = yes ] && command -v python3 >/dev/null; then
    mapfile -t missing_pip < <(python3 - "$requirements" <<'PY'
import re, sys
from importlib import metadata
def numbers(version):
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, minimum = line.partition(">=")
    try:
        if numbers(metadata.version(name.strip())) >= numbers(minimum):
            continue
    except metadata.PackageNotFoundError:
        pass
    print(line)
PY
    )
    [ ${#missing_pip[@]} -eq 0 ] || need_pip=yes
fi

[ ${#missing_apt[@]} -eq 0 ] && [ "$need_pip" = no ] && exit 0

# The pip command that installs into the python3 on PATH: no flag where its site-packages is writable (root, a
# venv, pyenv), else --user; --break-system-packages where Debian marks the interpreter as managed by apt
# (PEP 668) and no venv is active.
pip_command() {
    local flags=""
    if command -v python3 >/dev/null; then
        flags=$(python3 - <<'PY'
import os, sys, sysconfig
flags = []
if sys.prefix == sys.base_prefix:
    if not os.access(sysconfig.get_path("purelib"), os.W_OK):
        flags.append("--user")
    if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")):
        flags.append("--break-system-packages")
print(" ".join(flags))
PY
        )
    fi
    echo "python3 -m pip install -q ${flags:+$flags }-r $requirements"
}

if [ "$(id -u)" = 0 ]; then
    if [ ${#missing_apt[@]} -gt 0 ]; then
        echo "installing Debian packages: ${missing_apt[*]}"
        apt-get -o DPkg::Lock::Timeout=300 update -q
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
            "${missing_apt[@]}"
    fi
    if [ "$need_pip" = yes ]; then
        echo "installing Python packages: $requirements"
        $(pip_command)
    fi
    exit 0
fi

{
    echo "missing:${missing_apt[*]:+ Debian packages ${missing_apt[*]}.}${missing_pip[*]:+ Python packages ${missing_pip[*]}.}"
    echo "run:"
    [ ${#missing_apt[@]} -eq 0 ] || echo "  sudo apt-get install -y --no-install-recommends ${missing_apt[*]}"
    [ "$need_pip" = no ] || echo "  $(pip_command)"
    echo "(or run the same make command as root, which installs them)"
} >&2
exit 1
