"""The contract kit: put a method or a dataset through warpbench's contract on tiny inputs.

Each rule is a named function. Use the kit three ways:

- ``warpbench check NAME`` on the command line (a method, a dataset kind, a ``datasets.yaml``
  dataset, or an installed plugin's entry-point name);
- plain functions in any test: ``assert_method_contract(MyMethod())`` and
  ``assert_dataset_contract(dataset)`` raise :class:`ContractError` (an ``AssertionError``) listing
  every broken rule with what was expected and what came back; ``check_method`` and
  ``check_dataset`` return the :class:`ContractReport` instead;
- as a pytest plugin (installed with warpbench through the ``pytest11`` entry point): the
  ``warpbench_contract`` fixture has ``.method(method, preset="default")`` and
  ``.dataset(dataset)``.

One module per idea, their public names all importable from here:

- :mod:`warpbench.testing.engine`: rules, their results, the report, and running rules on a probe;
- :mod:`warpbench.testing.method_rules`: the check images, the method probe and the method rules
  (how a method is judged, and how a learning method is trained for it first, is said there);
- :mod:`warpbench.testing.dataset_rules`: the dataset probe and the dataset rules;
- :mod:`warpbench.testing.pytest_plugin`: the ``warpbench_contract`` fixture.

The kit imports only numpy at import time (torch and the platform's modules load when a check
runs), so loading it as a pytest plugin costs nothing.
"""

from __future__ import annotations

from warpbench.testing.dataset_rules import (
    DATASET_RULES,
    DatasetProbe,
    assert_dataset_contract,
    check_dataset,
)
from warpbench.testing.engine import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    ContractError,
    ContractReport,
    Rule,
    RuleBook,
    RuleResult,
    Skipped,
    Violation,
    Warned,
)
from warpbench.testing.method_rules import (
    BATCH_TOLERANCE,
    BORDER,
    CHECK_SHAPE,
    CHECK_SHIFT,
    DETERMINISM_TOLERANCE,
    IDENTITY_TOLERANCE,
    LEARNING_SHAPE,
    METHOD_RULES,
    SHIFT_RATIO,
    TRAIN_SHIFT,
    TRAIN_SPLIT,
    TRAIN_STEPS,
    MethodProbe,
    assert_method_contract,
    check_method,
    recovered_shift,
    smooth_image,
    training_dataset,
)

__all__ = [
    "BATCH_TOLERANCE", "BORDER", "CHECK_SHAPE", "CHECK_SHIFT", "DATASET_RULES",
    "DETERMINISM_TOLERANCE", "FAIL", "IDENTITY_TOLERANCE", "LEARNING_SHAPE", "METHOD_RULES",
    "PASS", "SHIFT_RATIO", "SKIP", "TRAIN_SHIFT", "TRAIN_SPLIT", "TRAIN_STEPS", "WARN",
    "ContractError", "ContractReport", "DatasetProbe", "MethodProbe", "Rule", "RuleBook",
    "RuleResult", "Skipped", "Violation", "Warned", "assert_dataset_contract",
    "assert_method_contract", "check_dataset", "check_method", "recovered_shift", "smooth_image",
    "training_dataset",
]
