"""The resilience tests' summaries (seed, operations, faults, violations) at the end of the pytest session."""

from __future__ import annotations

import pytest

from tests.resilience.history import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    for summary in SUMMARIES:
        terminalreporter.write_sep("=", "resilience")
        for line in summary.splitlines():
            terminalreporter.write_line(line)
