"""Scores that papers report, as plugins supply them through ``register_reported_results``.

A reported result is one number from one table of one paper, carried with everything needed to
check it and to read it fairly: the paper, the table, the dataset and metric as the paper names
them, and how the method was configured or trained there (for a classical baseline: the tool,
similarity metric and schedule the authors chose). ``warpbench_method`` and ``warpbench_dataset``
name the warpbench method and dataset the result corresponds to, when there are such; the
instrumentation-bias page compares the reported value with warpbench's own measurement only then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Metrics a reported result may give, with the direction that is better.
METRICS = {"dice": "higher", "hd95": "lower", "sdlogj": "lower", "folding_percent": "lower"}


@dataclass(frozen=True)
class ReportedResult:
    method: str  # as the paper names it, e.g. "SyN"
    dataset: str  # as the paper names it, e.g. "IXI"
    metric: str  # one of METRICS
    value: float  # the mean over the paper's test pairs, as printed
    source: str  # short citation, e.g. "Chen et al., MedIA 2022 (TransMorph)"
    paper: str  # full citation
    table: str  # where in the paper the value is printed
    family: str  # classical / learning / baseline
    configuration: str  # how the method was configured or trained in that paper
    supervision: str = "none"  # none / labels (learning methods trained with label maps)
    std: float | None = None  # the spread the paper prints next to the value, if any
    url: str = ""  # DOI or arXiv link
    warpbench_method: str | None = None  # the warpbench method this corresponds to, if any
    warpbench_dataset: str | None = None  # the warpbench dataset this corresponds to, if any
    notes: str = ""

    @property
    def key(self) -> str:
        """What makes a result unique: the same number cannot be registered twice."""
        return f"{self.source}, {self.table}: {self.method} on {self.dataset} ({self.metric})"

    def check(self) -> list[str]:
        """Problems with the record (empty when it is sound)."""
        from warpbench.methods import FAMILIES, SUPERVISION  # imports torch: only when checking

        problems = []
        for name in ("method", "dataset", "source", "paper", "table", "configuration"):
            if not str(getattr(self, name) or "").strip():
                problems.append(f"has no {name}")
        if self.metric not in METRICS:
            problems.append(f"metric {self.metric!r} is not one of {sorted(METRICS)}")
        if not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            problems.append(f"value {self.value!r} is not a finite number")
        if self.family not in FAMILIES:
            problems.append(f"family {self.family!r} is not one of {FAMILIES}")
        if self.supervision not in SUPERVISION:
            problems.append(f"supervision {self.supervision!r} is not one of {SUPERVISION}")
        return problems

    def as_row(self) -> dict:
        """A flat dict for a table."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
