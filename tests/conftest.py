"""Suite-wide rules."""

from __future__ import annotations

import os

import pytest

# Fixtures every part's tests may use: a private PostgreSQL server (`postgres`, `postgres_url`),
# and both request stores (`stores`).
pytest_plugins = ["tests.support.postgres", "tests.support.stores"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI no test may be skipped: a skip there hides a missing install step."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") == "true" and skipped:
        names = ", ".join(r.nodeid for r in skipped[:5])
        print(f"\nCI=true: {len(skipped)} test(s) were skipped ({names}); failing the run.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
