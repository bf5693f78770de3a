"""The committed fixtures of the browser modules' Node tests are what the Python reference writes now."""

from .js_fixtures import PATH, render


def test_committed_js_fixtures_are_current():
    assert PATH.exists(), f"{PATH} is missing: run .venv/bin/python -m tests.js_fixtures"
    assert PATH.read_text() == render(), f"{PATH} is stale: run .venv/bin/python -m tests.js_fixtures"
