"""The app's pages and their navigation: which store is shown, which pages exist, in what order.

``leaderboard/app.py`` (what ``streamlit run`` executes) calls :func:`main`; tests call it with
a ``start_page``, since Streamlit's AppTest has no URL path to pick a page by.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
from collections.abc import Mapping, Sequence

import streamlit as st

DEFAULT_DB = "results/warpbench.duckdb"
DB_ENV = "WARPBENCH_DB"

# One module per page in views/ (TITLE, ICON, URL_PATH, render(db_path)); the first is the
# home page. Adding a page is adding its module and its name here.
PAGES = (
    "leaderboard",
    "instrumentation",
    "supervision",
    "domain_shift",
    "mi_dice",
    "significance",
    "pair_viewer",
    "runs",
)


def page_module(name: str):
    """The module of page ``name`` (one of :data:`PAGES`)."""
    return importlib.import_module(f"warpbench_leaderboard.views.{name}")


def resolve_db_path(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """``--db PATH`` or ``--db=PATH`` in ``argv``, else ``$WARPBENCH_DB``, else the default;
    made absolute so the messages name the file that was looked at."""
    path = None
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--db="):
            path = arg.split("=", 1)[1]
    path = path or environ.get(DB_ENV) or DEFAULT_DB
    return os.path.abspath(os.path.expanduser(path))


def main(start_page: str | None = None) -> None:
    """Lay out the app. ``start_page`` (a page's ``URL_PATH``) is the page shown at the root URL
    instead of the first one."""
    st.set_page_config(page_title="warpbench", page_icon=":material/grid_on:", layout="wide")
    db_path = resolve_db_path(sys.argv[1:], os.environ)
    views = [page_module(name) for name in PAGES]
    start = start_page if start_page in {v.URL_PATH for v in views} else views[0].URL_PATH
    pages = [
        st.Page(
            functools.partial(view.render, db_path),
            title=view.TITLE,
            icon=view.ICON,
            url_path=view.URL_PATH,
            default=view.URL_PATH == start,
        )
        for view in views
    ]
    st.navigation(pages).run()
    _warm_statistics_once()


@functools.cache
def _warm_statistics_once() -> None:
    """Import ``scipy.stats`` (about 0.6 s here) in the background once the first page has been
    drawn, so a visitor's first significance or MI page does not wait for it. Started after the
    page, so it never competes with the first render; an import it has begun is shared, through
    Python's import lock, by a page that needs the module sooner."""
    threading.Thread(target=importlib.import_module, args=("scipy.stats",), daemon=True,
                     name="warpbench-warm-imports").start()
