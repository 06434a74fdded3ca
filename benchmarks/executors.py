"""What the executors cost and give, through the scheduler as ``warpbench run`` uses it.

- overhead: ``identity`` on N small pairs (synthetic 24^3, default 1,000), in-process, through
  the pool (1 worker) and through Ray (a local cluster): seconds per pair from the first pair
  handed out to the last one stored (planning, workers starting, every store write), and store
  writes per second (the time spent in ``record_pair`` alone);
- quick: the ``quick`` suite of ``datasets.yaml`` (what ``warpbench ci`` runs: identity and
  ``greedy:fast`` on two small synthetic sets) in-process, through the pool (1 worker) and
  through Ray, each into a fresh store: seconds per pair, and each one's extra seconds per pair
  over in-process;
- throughput: ``greedy:fast`` pairs per second on the hippocampus test pairs (else the quick
  synthetic ones) through the pool with 1 and 2 workers on the CPU, and on a machine with GPUs
  with one worker on one GPU against one on every GPU.

Each figure is appended to ``benchmarks/measured/executors.jsonl`` with the host, its cores and
its load when it ran; one already there for this host is not measured again (``--again``), so an
interrupted run resumes.

    .venv/bin/python benchmarks/executors.py [--only overhead|quick|throughput] [--pairs 1000]
        [--executors inprocess,pool,ray] [--throughput-pairs 8] [--again]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `warpbench run` sets it, before torch

import torch  # noqa: E402

from warpbench.config import load_config  # noqa: E402
from warpbench.executors import InProcessExecutor, PoolExecutor  # noqa: E402
from warpbench.plugins import load_registry  # noqa: E402
from warpbench.scheduler import Scheduler, describe_dataset, make_plan  # noqa: E402
from warpbench.store import Store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEASURED = REPO / "benchmarks" / "measured" / "executors.jsonl"
OVERHEAD_CONFIG = """
datasets:
  overhead:
    plugin: synthetic
    shape: [24, 24, 24]
    subjects: {subjects}
    split: {{train: 0, val: 0, test: {subjects}}}
    pairs: {{test: {pairs}}}
"""


def executor(name: str):
    """The executor ``name`` on the CPU, the pool with one worker."""
    if name == "inprocess":
        return InProcessExecutor("cpu")
    if name == "pool":
        return PoolExecutor("cpu", 1)
    from warpbench.executors import RayExecutor

    return RayExecutor("cpu")


class CountedStore(Store):
    """The store, timing its pair writes."""

    writes = 0
    write_seconds = 0.0

    def record_pair(self, *args, **kwargs):
        start = time.perf_counter()
        super().record_pair(*args, **kwargs)
        self.write_seconds += time.perf_counter() - start
        self.writes += 1


def scheduled(registry, config_path: Path, methods: list[str], datasets: list[str], chosen,
              folder: Path):
    """Run ``methods`` on ``datasets`` through ``chosen`` into a fresh store (their dataset rows
    written first, so MI is not timed); the wall seconds, the store, and the summary."""
    plan = make_plan(registry, load_config(config_path), methods, datasets)
    store = CountedStore(folder / f"{time.monotonic_ns()}.duckdb")
    for dataset in plan.datasets.values():
        store.record_dataset(describe_dataset(dataset))
    scheduler = Scheduler(registry, store, chosen, progress=False)
    start = time.perf_counter()
    summary = scheduler.run(plan)
    return time.perf_counter() - start, store, summary


def overhead(registry, folder: Path, names: list[str], pairs: int, done: set) -> None:
    subjects = next(n for n in range(2, 10_000) if n * (n - 1) >= pairs)
    config_path = folder / "datasets.yaml"
    config_path.write_text(OVERHEAD_CONFIG.format(subjects=subjects, pairs=pairs))
    for name in names:
        key = ("overhead", name, pairs)
        if key in done:
            continue
        wall, store, summary = scheduled(registry, config_path, ["identity"], ["overhead"],
                                         executor(name), folder)
        record({"figure": "overhead", "executor": name, "method": "identity",
                "pairs": summary.pairs_ok, "failed": summary.pairs_failed, "wall_s": wall,
                "s_per_pair": wall / pairs,
                "store_writes_per_s": store.writes / store.write_seconds})


def quick_suite(registry, folder: Path, names: list[str], done: set) -> None:
    """Measured side by side in one sitting, so it is measured again unless every executor's
    figure is there."""
    measured = {key[:2] for key in done}
    if all(("quick", name) in measured for name in names):
        return
    suite = load_config(REPO / "datasets.yaml").suite("quick")
    per_pair = {}
    for name in names:
        wall, _, summary = scheduled(registry, REPO / "datasets.yaml", suite.methods,
                                     suite.datasets, executor(name), folder)
        pairs = summary.pairs_ok + summary.pairs_failed
        per_pair[name] = wall / pairs
        row = {"figure": "quick", "executor": name, "method": ",".join(suite.methods),
               "dataset": ",".join(suite.datasets), "pairs": summary.pairs_ok,
               "failed": summary.pairs_failed, "wall_s": wall, "s_per_pair": per_pair[name]}
        if "inprocess" in per_pair:
            row["extra_s_per_pair_over_inprocess"] = per_pair[name] - per_pair["inprocess"]
        record(row)


def throughput(registry, folder: Path, pairs: int, done: set) -> None:
    config_path = REPO / "datasets.yaml"
    config = load_config(config_path)
    dataset = "hippocampus"
    plan = make_plan(registry, config, ["greedy:fast"], [dataset])
    if not plan.runs:
        dataset = "quick-distinct"
    # A config of the chosen block with only its first pairs, so every setting scores the same.
    block = dict(config.datasets[dataset])
    block["pairs"] = {**block.get("pairs", {}), "test": pairs}
    trimmed = folder / "throughput.yaml"
    root = block.get("root")
    if root is not None:
        block["root"] = str((config_path.parent / root).resolve())
    if block["plugin"] == "synthetic":  # its cache where the repository's config keeps it
        block.setdefault("cache_dir", str(REPO / "results" / "cache" / "datasets"))
    trimmed.write_text(json.dumps({"datasets": {dataset: block}}))
    settings = [("cpu", 1), ("cpu", 2)]
    if torch.cuda.is_available():
        settings += [("cuda:0", 1), ("cuda", None)]
    for device, workers in settings:
        key = ("throughput", f"pool {device} x{workers or 'every GPU'}", pairs)
        if key in done:
            continue
        chosen = PoolExecutor(device, workers)
        wall, _, summary = scheduled(registry, trimmed, ["greedy:fast"], [dataset], chosen,
                                     folder)
        record({"figure": "throughput", "executor": key[1], "method": "greedy:fast",
                "dataset": dataset, "pairs": summary.pairs_ok, "failed": summary.pairs_failed,
                "wall_s": wall, "pairs_per_s": summary.pairs_ok / wall,
                "workers": len(chosen.slots)})


def record(row: dict) -> None:
    row = {**row, "host": socket.gethostname(), "cores": os.cpu_count(),
           "load_1min": round(os.getloadavg()[0], 2),
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    MEASURED.parent.mkdir(parents=True, exist_ok=True)
    with MEASURED.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def measured_here() -> set:
    """The figures this host has measured already: (figure, executor, pairs)."""
    if not MEASURED.exists():
        return set()
    rows = [json.loads(line) for line in MEASURED.read_text().splitlines() if line.strip()]
    return {(r["figure"], r["executor"], r["pairs"] + r["failed"]) for r in rows
            if r["host"] == socket.gethostname()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["overhead", "quick", "throughput"])
    parser.add_argument("--pairs", type=int, default=1000, help="identity pairs (overhead)")
    parser.add_argument("--executors", default="inprocess,pool,ray")
    parser.add_argument("--throughput-pairs", type=int, default=8)
    parser.add_argument("--again", action="store_true", help="measure what is measured already")
    args = parser.parse_args()
    registry = load_registry()
    done = set() if args.again else measured_here()
    with tempfile.TemporaryDirectory() as folder:
        if args.only in (None, "overhead"):
            overhead(registry, Path(folder), args.executors.split(","), args.pairs, done)
        if args.only in (None, "quick"):
            quick_suite(registry, Path(folder), args.executors.split(","), done)
        if args.only in (None, "throughput"):
            throughput(registry, Path(folder), args.throughput_pairs, done)


if __name__ == "__main__":
    main()
