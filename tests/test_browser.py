"""The app in a real browser: ``streamlit run`` on 127.0.0.1, every page opened in Debian's
headless chromium through the DevTools protocol (``browser_tools``), no Streamlit exception
element on any page, and a screenshot of each page in ``results/screenshots/`` (or
``$WARPBENCH_SCREENSHOTS``).

Skipped when no chromium is installed (``apt-get install chromium``; ``.ci/run`` does it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import browser_tools as bt

SCREENSHOTS = Path(os.environ.get("WARPBENCH_SCREENSHOTS", bt.REPO / "results" / "screenshots"))

pytestmark = pytest.mark.skipif(bt.CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with bt.chromium(tmp_path_factory.mktemp("chromium-profile")) as tools:
        yield tools


def _visit_every_page(tools, base: str, tag: str | None) -> dict[str, dict]:
    """Open every page; with a ``tag``, save a screenshot of each as ``<tag>-<page>.png``."""
    states = {}
    for page in bt.PAGE_PATHS:
        state = bt.open_page(tools, bt.page_url(base, page))
        if tag:
            bt.screenshot(tools, state, SCREENSHOTS / f"{tag}-{page}.png")
        states[page] = state
    return states


def test_every_page_renders_without_exception_on_a_filled_store(browser, app_store):
    with bt.serve(app_store, app_store.parent) as base:
        states = _visit_every_page(browser, base, "filled")
        # A shared URL restores the page and its filters.
        shared = bt.open_page(browser, bt.page_url(base, bt.HOME, "family=classical&dataset=tiny-b"))
        shared_sig = bt.open_page(browser, bt.page_url(base, "significance", "sig_dataset=tiny-c"))
    failures = {page: s["exceptions"] for page, s in states.items() if s["exceptions"]}
    assert not failures, f"Streamlit exceptions: {failures}"
    for page, state in states.items():
        assert state["title"], f"{page} drew no title"
        assert (SCREENSHOTS / f"filled-{page}.png").stat().st_size > 10_000
    assert states["leaderboard"]["plots"] == 1 and states["leaderboard"]["tables"] == 2
    assert states["pair-viewer"]["plots"] == 3  # slices, Jacobian, grid: the field was recomputed
    assert states["significance"]["plots"] == 1
    assert sorted(shared["tags"]) == ["classical", "tiny-b"]
    assert "tiny-c" in shared_sig["selects"]


def test_every_page_guides_on_an_empty_store(browser, tmp_path):
    missing = tmp_path / "none.duckdb"
    with bt.serve(missing, tmp_path) as base:
        states = _visit_every_page(browser, base, None)
        bt.screenshot(browser, bt.open_page(browser, base), SCREENSHOTS / "empty-leaderboard.png")
    for page, state in states.items():
        assert not state["exceptions"], f"{page}: {state['exceptions']}"
        assert any("warpbench run" in alert for alert in state["alerts"]), (page, state["alerts"])
    assert not missing.exists()
