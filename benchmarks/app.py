"""Time to first render of the leaderboard and significance pages on a store of 100,000 pairs.

The store is filled in one bulk append (``Store.append_frame``): 5 datasets x 20 configurations
(10 methods, 1 to 4 presets each; the learning ones trained on the first dataset) x 1,000 pairs,
0.5 % of them failed. Scores are synthetic but paired (each pair has its own difficulty), so the
paired tests have something to find.

Five measurements per page, in seconds:

- ``AppTest, fresh process``: a new Python process runs the page once through Streamlit's AppTest:
  importing the app's modules, reading the store, the statistics and building every element.
- ``AppTest, new session``: the same process again, with every cache cleared: the store changed
  since anyone last looked (modules imported, nothing cached).
- ``browser, ...``: ``streamlit run`` on 127.0.0.1 and headless chromium (when installed), from
  the navigation to the finished render (script done, every table and chart drawn). ``fresh
  server``: the page's first visit after the server started (it has served only the runs page,
  which reads no pair scores), so it includes the server's one-time imports for that page.
  ``store changed``: every page served once already, then one pair appended to the store, so
  nothing cached applies: a new visitor while a run writes. ``next visitor``: the same page again,
  store unchanged (the analyses are cached per store content).

Run from the repository root: ``.venv/bin/python benchmarks/app.py [--pairs 100000]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
PAGES = ("leaderboard", "significance")
GOAL_SECONDS = 2.0

METHODS = (  # name, family, supervision, presets, trained, base Dice
    ("greedy", "classical", "none", ("default", "fast", "tuned", "literature"), False, 0.80),
    ("demons", "classical", "none", ("default", "fast", "literature"), False, 0.77),
    ("syn", "classical", "none", ("default", "literature", "tuned"), False, 0.81),
    ("affine", "classical", "none", ("default",), False, 0.62),
    ("fireants", "classical", "none", ("default",), False, 0.80),
    ("identity", "baseline", "none", ("default",), False, 0.45),
    ("vxm", "learning", "none", ("default", "large"), True, 0.78),
    ("transmorph", "learning", "none", ("default", "large"), True, 0.79),
    ("vxm-sup", "learning", "labels", ("default", "dice"), True, 0.84),
    ("lku", "learning", "labels", ("default",), True, 0.85),
)
DATASETS = ("oasis", "lpba40", "ibsr18", "cumc12", "mgh10")


def build_store(path: Path, n_pairs: int, seed: int = 0) -> int:
    """Fill a new store at ``path`` with about ``n_pairs`` pair rows; returns the row count."""
    from warpbench.store import Store

    rng = np.random.default_rng(seed)
    configs = [(m, f, s, p, t, b) for m, f, s, presets, t, b in METHODS for p in presets]
    per_run = max(1, n_pairs // (len(configs) * len(DATASETS)))
    start = datetime(2025, 1, 1)
    runs, pairs = [], []
    fixed = np.array([f"s{i:04d}" for i in range(per_run)])
    moving = np.array([f"s{(i * 7 + 1) % (per_run + 1):04d}m" for i in range(per_run)])
    for d, dataset in enumerate(DATASETS):
        difficulty = rng.normal(0, 0.05, per_run)  # shared by every method: paired data
        for k, (method, family, supervision, preset, trained, base) in enumerate(configs):
            run_id = f"run-{d}-{k}"
            # trained on DATASETS[0]; label-supervised methods lose more on the others
            shift = 0.0 if not trained or d == 0 else (
                (0.08 if supervision == "labels" else 0.04) * (1 + d / 4))
            dice = np.clip(base - 0.03 * d - shift + 0.01 * (preset == "tuned") + difficulty
                           + rng.normal(0, 0.02, per_run), 0, 1)
            failed = rng.random(per_run) < 0.005
            runs.append({
                "run_id": run_id, "config_key": run_id, "method": method, "preset": preset,
                "params": "{}", "method_version": "1", "family": family, "supervision": supervision,
                "dataset": dataset, "train_dataset": DATASETS[0] if trained else None,
                "in_domain": d == 0 if trained else None, "seed": 0,
                "device": "cpu", "started_at": start + timedelta(minutes=len(runs)),
                "ended_at": start + timedelta(minutes=len(runs) + 1), "status": "complete",
            })
            pairs.append(pd.DataFrame({
                "run_id": run_id, "fixed": fixed, "moving": moving, "attempt": 1,
                "status": np.where(failed, "failed", "ok"),
                "error": np.where(failed, "timed out after 300 s", None),
                "mean_dice": np.where(failed, np.nan, dice),
                "mean_hd95": np.where(failed, np.nan, 2 + 4 * (1 - dice)),
                "sdlogj": np.where(failed, np.nan, rng.uniform(0.03, 0.12, per_run)),
                "folding_percent": np.where(failed, np.nan, rng.uniform(0, 0.1, per_run)),
                "seconds": np.where(failed, np.nan, rng.uniform(0.1, 30, per_run)),
                "peak_memory_mb": np.where(failed, np.nan, rng.uniform(200, 4000, per_run)),
                "device": "cpu", "finished_at": start,
            }))
    store = Store(path)
    store.append_frame("runs", pd.DataFrame(runs))
    count = store.append_frame("pairs", pd.concat(pairs, ignore_index=True))
    store.append_frame("datasets", pd.DataFrame({
        "dataset": list(DATASETS), "fingerprint": list(DATASETS), "kind": "synthetic",
        "mi_bits": [1.3, 1.1, 1.0, 0.9, 0.8], "nmi": [0.40, 0.35, 0.33, 0.30, 0.28],
        "computed_at": start,
    }))
    return count


# --- AppTest, in a fresh process -----------------------------------------------------------------
def _page_script(page: str) -> None:
    from warpbench_leaderboard import navigation

    navigation.main(start_page=page)


def _clear_caches() -> None:
    from warpbench_leaderboard import loaders
    from warpbench_leaderboard.views import significance

    loaders.clear()
    significance._tests.clear()


def apptest_child(db: str, page: str) -> None:
    """Runs in the child process: print the two AppTest timings of ``page`` as JSON."""
    from streamlit.testing.v1 import AppTest

    os.environ["WARPBENCH_DB"] = db
    timings = {}
    for label in ("fresh", "session"):
        at = AppTest.from_function(_page_script, args=(page,), default_timeout=300)
        start = time.perf_counter()
        at.run()
        timings[label] = time.perf_counter() - start
        problems = [e.value for e in at.exception] + [e.value for e in at.error]
        if problems:
            raise SystemExit(f"{page}: {problems}")
        if label == "fresh":
            _clear_caches()
    print(json.dumps(timings))


def apptest_timings(db: Path, page: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_child", str(db), page], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- a real server and browser -------------------------------------------------------------------
def _touch(db: Path, n: int) -> None:
    """Append one more scored pair to the first run: the store's content stamp changes, so the
    server's cached analyses no longer apply (as when a run writes while people look)."""
    from warpbench.store import Store

    Store(db).append_frame("pairs", pd.DataFrame([{
        "run_id": "run-0-0", "fixed": f"extra{n}", "moving": "s0000", "attempt": 1,
        "status": "ok", "mean_dice": 0.8,
        "finished_at": datetime(2025, 1, 2) + timedelta(seconds=n),
    }]))


def browser_timings(db: Path, workdir: Path) -> dict | None:
    """Per page, on its own freshly started server (first warmed by the runs page, which reads no
    pair scores): the first render after the server started, the first after the store changed
    (every page already served once), and the next visitor's."""
    # The tests' helpers for serving the app and driving chromium, loaded from their file.
    spec = importlib.util.spec_from_file_location("browser_tools",
                                                  REPO / "tests" / "browser_tools.py")
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)

    if bt.CHROMIUM is None:
        return None
    timings = {}
    touches = 0
    with bt.chromium() as tools:
        for page in PAGES:
            with bt.serve(db, workdir) as base:
                url = bt.page_url(base, page)
                bt.open_page(tools, bt.page_url(base, "runs"), poll=0.05)
                states = [bt.open_page(tools, url, poll=0.05, settle=3)]
                for other in PAGES:
                    bt.open_page(tools, bt.page_url(base, other), poll=0.05)
                touches += 1
                _touch(db, touches)
                time.sleep(1.2)  # the server re-reads the stamp at most once a second
                states.append(bt.open_page(tools, url, poll=0.05, settle=3))
                tools.call("Page.navigate", url="about:blank")
                states.append(bt.open_page(tools, url, poll=0.05, settle=3))
            for state in states:
                if state["exceptions"]:
                    raise SystemExit(f"{page}: {state['exceptions']}")
            timings[page] = [state["seconds"] for state in states]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        apptest_child(*args._child)
        return

    with tempfile.TemporaryDirectory(prefix="wb-bench-app-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "bench.duckdb"
        db.unlink(missing_ok=True)
        start = time.perf_counter()
        rows = build_store(db, args.pairs)
        print(f"store: {rows:,} pair rows, {len(DATASETS)} datasets, "
              f"{sum(len(m[3]) for m in METHODS)} configurations each, bulk-appended in "
              f"{time.perf_counter() - start:.2f} s ({db})")
        print(f"goal: first render under {GOAL_SECONDS:g} s; machine: {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}\n")
        results = {page: apptest_timings(db, page) for page in PAGES}
        browser = None if args.no_browser else browser_timings(db, folder)
        print(f"{'seconds to render':<24}" + "".join(f"{p:>14}" for p in PAGES))
        rows = [("AppTest, fresh process", [results[p]["fresh"] for p in PAGES]),
                ("AppTest, new session", [results[p]["session"] for p in PAGES])]
        if browser:
            rows += [("browser, fresh server", [browser[p][0] for p in PAGES]),
                     ("browser, store changed", [browser[p][1] for p in PAGES]),
                     ("browser, next visitor", [browser[p][2] for p in PAGES])]
        for label, values in rows:
            print(f"{label:<24}" + "".join(f"{v:>14.2f}" for v in values))
        if browser is None and not args.no_browser:
            print("(browser: chromium is not installed)")


if __name__ == "__main__":
    main()
