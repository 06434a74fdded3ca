"""The rule engine of the contract kit: rules, what each found, and the report of them all.

A rule is a named function of a *probe* (the object that runs the method or loads the dataset
being checked, once, for every rule to judge). It returns a message when the contract holds and
raises :class:`Violation` (a failure, with what was expected and what came back), :class:`Skipped`
(it cannot judge) or :class:`Warned` (worth a look, not a failure). Any other exception is a
broken contract too: a rule that cannot even run says so instead of stopping the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PASS, FAIL, SKIP, WARN = "PASS", "FAIL", "SKIP", "WARN"


class Violation(Exception):
    """Raised by a rule: what the contract expects and what came back."""

    def __init__(self, message: str, expected: str | None = None, got: str | None = None):
        super().__init__(message)
        self.message, self.expected, self.got = message, expected, got


class Skipped(Exception):
    """Raised by a rule that cannot judge (an earlier rule failed, or it does not apply)."""


class Warned(Exception):
    """Raised by a rule whose finding is worth a look but does not break the contract."""


@dataclass
class RuleResult:
    rule: str
    status: str  # PASS / FAIL / SKIP / WARN
    message: str = ""
    expected: str | None = None
    got: str | None = None

    def __str__(self) -> str:
        text = f"{self.status} {self.rule}: {self.message}"
        if self.expected is not None:
            text += f"\n       expected: {self.expected}"
        if self.got is not None:
            text += f"\n       got:      {self.got}"
        return text


class ContractError(AssertionError):
    """A method or dataset broke at least one rule; the message is the whole report."""


@dataclass
class ContractReport:
    subject: str  # what was checked, in words
    results: list[RuleResult] = field(default_factory=list)

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def result(self, rule: str) -> RuleResult:
        return next(r for r in self.results if r.rule == rule)

    def format(self) -> str:
        verdict = "passes" if self.ok else f"breaks {len(self.failures)} rule(s)"
        lines = [f"{self.subject} {verdict} of the warpbench contract"]
        lines += [f"  {result}" for result in self.results]
        return "\n".join(lines)

    def raise_for_failures(self) -> ContractReport:
        if not self.ok:
            raise ContractError(self.format())
        return self


@dataclass
class Rule:
    name: str
    description: str
    function: Callable[[Any], str]


class RuleBook:
    """The rules of one kind of subject (methods, datasets), run in the order they are written,
    so that a later rule may skip on what an earlier one reports."""

    def __init__(self):
        self.rules: list[Rule] = []

    def rule(self, name: str, description: str):
        """A decorator ``@rule(name, description)`` that adds a check function to the book."""

        def decorate(function):
            self.rules.append(Rule(name, description, function))
            function.rule = name
            return function

        return decorate

    def run(self, probe, subject: str) -> ContractReport:
        """Judge ``probe`` by every rule into a report on ``subject`` (what was checked, in
        words)."""
        report = ContractReport(subject)
        for rule in self.rules:
            try:
                message = rule.function(probe)
                report.results.append(RuleResult(rule.name, PASS, message or rule.description))
            except Violation as exc:
                report.results.append(
                    RuleResult(rule.name, FAIL, exc.message, exc.expected, exc.got))
            except Skipped as exc:
                report.results.append(RuleResult(rule.name, SKIP, str(exc)))
            except Warned as exc:
                report.results.append(RuleResult(rule.name, WARN, str(exc)))
            except Exception as exc:  # a rule that cannot even run is a broken contract
                report.results.append(RuleResult(
                    rule.name, FAIL, f"checking raised {type(exc).__name__}: {exc}"))
        return report


def describe(value) -> str:
    """What came back, in words for a report's ``got``: type, shape, dtype (and device)."""
    if hasattr(value, "detach"):
        return f"torch.Tensor shape {tuple(value.shape)} dtype {value.dtype} on {value.device}"
    if isinstance(value, np.ndarray):
        return f"numpy array shape {value.shape} dtype {value.dtype}"
    return f"{type(value).__name__} {value!r:.60}"
