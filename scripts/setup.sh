#!/usr/bin/env bash
# Install what badged needs on Debian 12 and build the virtualenv (.venv). Idempotent:
# apt runs only when a package is missing. Usage: scripts/setup.sh [demo|test]
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-test}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# pcscd + the vpcd driver run the simulated reader; gcc, swig, libpcsclite-dev and the
# Python headers build pyscard (PyPI has no Linux wheel for it).
packages=(pcscd vsmartcard-vpcd libpcsclite-dev swig gcc python3-dev python3-venv pkg-config)
if [ "$purpose" = test ]; then
    # promtool (metrics and alert rules), sqlite3 (bench baseline), systemd-analyze,
    # sshd (the SFTP destination of the door-system exports, against a real server);
    # debootstrap and systemd-nspawn build and boot the rollout test's Debian 12 machine.
    packages+=(prometheus sqlite3 systemd openssh-server debootstrap systemd-container)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# pcscd 1.9.9 writes its pid file there even when it runs on a private socket.
$SUDO install -d -m 0755 /run/pcscd
# sshd refuses to start without its privilege-separation folder (tests run it on loopback).
if [ "$purpose" = test ]; then $SUDO install -d -m 0755 /run/sshd; fi

if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
    /usr/bin/python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch .venv/.installed
fi
