#!/usr/bin/env bash
# The demo command of the README: set up, then run the daemon on the demo school
# (host file demo/badged.yaml, state in ./state/demo). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
exec .venv/bin/python -m badged.demo "$@"
