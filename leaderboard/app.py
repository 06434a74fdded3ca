"""The warpbench leaderboard app.

    streamlit run leaderboard/app.py -- --db results/warpbench.duckdb

The results store is ``--db`` (after ``--``), else ``$WARPBENCH_DB``, else
``results/warpbench.duckdb``. The app only reads the store, so it can stay open while a run writes.
Its code is the package ``warpbench_leaderboard`` (installed with warpbench); this file is the
script Streamlit runs.
"""

from __future__ import annotations

import os

# The pair viewer registers in worker threads, each with its own OpenMP team; with OpenMP's
# default active waiting, idle teams spin and starve the working one on a small machine (a 0.5 s
# registration took 40 s on 2 busy cores). Chosen before anything loads torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from warpbench_leaderboard.navigation import main  # noqa: E402

# `streamlit run` and AppTest execute this file as __main__.
if __name__ == "__main__":
    main()
