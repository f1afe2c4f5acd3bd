"""Print the rollout test's timings at the end of the session (CI logs keep them)."""

from __future__ import annotations

import pytest
from machinekit import TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("rollout timings")
    for step, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{seconds:7.1f} s  {step}")
