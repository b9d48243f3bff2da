"""What the test run itself is configured with: the one module of the tests that reads the environment.

CI=true turns missing prerequisites (PostgreSQL, kubectl, a PostgreSQL cluster) from skips into failures; the other
variables point the tests at tools and servers. Processes the tests start get this environment with their own
settings on top (`pacer_common.settings.process_environment`).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True under CI=true, where every test must run rather than skip."""
    return os.environ.get("CI", "").lower() == "true"


def variable(name: str, default: str = "") -> str:
    """The test run's variable `name` (PACER_TEST_DATABASE_URL, PACER_KUBECTL, ...), else `default`."""
    return os.environ.get(name) or default


def require(problem: str, suite: str) -> NoReturn:
    """A prerequisite of `suite` is missing: under CI=true that fails the test (every suite must run there); on a
    developer's machine without the tool it skips, saying how to make it an error."""
    if in_ci():
        pytest.fail(f"{problem}; {suite} must run under CI=true", pytrace=False)
    pytest.skip(f"{problem} (set CI=true to make this an error)")
