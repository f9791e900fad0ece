"""pytest leak-check plugin (placeholder while the real one lands: registers the options only)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("leak-check")
    group.addoption("--leak-check", action="store_true", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leak_check: fail the test if it leaves processes behind")
