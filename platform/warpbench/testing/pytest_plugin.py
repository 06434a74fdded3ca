"""The contract kit as a pytest plugin (loaded through the ``pytest11`` entry point): the
``warpbench_contract`` fixture."""

from __future__ import annotations

import pytest

from warpbench.testing import ContractReport, check_dataset, check_method


class ContractFixture:
    """What the ``warpbench_contract`` fixture gives a test: each call fails the test with the
    whole report when a rule is broken, and returns the report otherwise."""

    def method(self, method, preset: str = "default", **options) -> ContractReport:
        return self._fail_on(check_method(method, preset, **options))

    def dataset(self, dataset, **options) -> ContractReport:
        return self._fail_on(check_dataset(dataset, **options))

    @staticmethod
    def _fail_on(report: ContractReport) -> ContractReport:
        if not report.ok:
            pytest.fail(report.format(), pytrace=False)
        return report


@pytest.fixture
def warpbench_contract() -> ContractFixture:
    """Check a method or dataset against the warpbench contract:
    ``warpbench_contract.method(MyMethod())``, ``warpbench_contract.dataset(dataset)``."""
    return ContractFixture()
