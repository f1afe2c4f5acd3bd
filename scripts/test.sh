#!/usr/bin/env bash
# The test command of the README: set up, lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
