"""A method's search space: which parameters a tuning may change and over what range, declared as
data next to the presets (``Method.search_space``), so that every method is tuned by one protocol
(``warpbench tune``) instead of by its author's own hand.

::

    search_space = {
        "learning_rate": FloatRange(0.05, 2.0, log=True),
        "lncc_window": Choice(3, 5, 7, 9),
        "iterations": Choice([200, 100, 30], [400, 200, 60]),  # a choice may be a list
    }

A parameter the space does not name keeps its ``default`` value. :func:`space_problems` is part
of ``Method.check``: a misspelt parameter, an empty range or a bound the method's ``Params``
refuse is reported when the plugin registers, naming the method and the parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from warpbench.options import OptionsError, unknown_keys

#: The values Optuna takes as categorical choices as they are; any other choice (a list) is
#: handed to it as its JSON text.
_PLAIN = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class _Interval:
    """The bounds ``low`` to ``high`` (both included), on a log scale when ``log`` (for step sizes
    and weights that matter by their order of magnitude)."""

    low: float
    high: float
    log: bool = False

    def values_to_check(self) -> list:
        return [self.low, self.high]

    def contains(self, value) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def problems(self) -> list[str]:
        if not self.low < self.high:
            return [f"low {self.low!r} is not below high {self.high!r}"]
        if self.log and self.low <= 0:
            return [f"a log scale needs a positive low, got {self.low!r}"]
        return []


@dataclass(frozen=True)
class FloatRange(_Interval):
    """A real parameter between ``low`` and ``high``."""

    def distribution(self):
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def encode(self, value):
        return float(value)

    def decode(self, value):
        return float(value)

    def describe(self) -> dict:
        return {"float": [self.low, self.high], "log": self.log}


@dataclass(frozen=True)
class IntRange(_Interval):
    """An integer parameter between ``low`` and ``high``."""

    low: int
    high: int

    def distribution(self):
        from optuna.distributions import IntDistribution

        return IntDistribution(int(self.low), int(self.high), log=self.log)

    def problems(self) -> list[str]:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)):
            return [f"an integer range needs integer bounds, got {self.low!r} and {self.high!r}"]
        return super().problems()

    def encode(self, value):
        return int(value)

    def decode(self, value):
        return int(value)

    def describe(self) -> dict:
        return {"int": [self.low, self.high], "log": self.log}


class Choice:
    """One of the ``options`` given (numbers, strings, booleans, or lists such as a schedule)."""

    def __init__(self, *options: Any):
        self.options = tuple(options)

    def __repr__(self) -> str:
        return f"Choice{self.options!r}"

    def __eq__(self, other) -> bool:
        return isinstance(other, Choice) and self.options == other.options

    def __hash__(self) -> int:
        return hash(json.dumps(self.options, sort_keys=True, default=str))

    def distribution(self):
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution([self.encode(option) for option in self.options])

    def values_to_check(self) -> list:
        return list(self.options)

    def contains(self, value) -> bool:
        return any(self.encode(option) == self.encode(value) for option in self.options)

    def problems(self) -> list[str]:
        if len(self.options) < 2:
            return [f"a choice needs at least two options, got {len(self.options)}"]
        encoded = [self.encode(option) for option in self.options]
        if len(set(map(json.dumps, encoded))) < len(encoded):
            return ["an option is given twice"]
        return []

    def encode(self, value):
        return value if isinstance(value, _PLAIN) else json.dumps(value)

    def decode(self, value):
        for option in self.options:
            if self.encode(option) == value:
                return option
        raise ValueError(f"{value!r} is not one of the options {self.options!r}")

    def describe(self) -> dict:
        return {"choice": list(self.options)}


Range = FloatRange | IntRange | Choice


def known_parameters(method) -> set[str]:
    """The parameters ``method`` has: its ``Params`` fields, or the keys of its presets."""
    if method.Params is not None:
        return set(method.Params.model_fields)
    return {key for values in method.presets.values() for key in values}


def space_problems(method) -> list[str]:
    """What is wrong with ``method.search_space`` (empty when it is sound): each entry names the
    parameter. Every bound or option is validated over the ``default`` preset, so a range the
    method's ``Params`` would refuse is found when the plugin registers, not in trial 17."""
    space = getattr(method, "search_space", {}) or {}
    if not isinstance(space, dict):
        return [f"search space must be a dict of parameter -> range, got {type(space).__name__}"]
    known = known_parameters(method)
    problems = []
    for name, spec in space.items():
        if name not in known:
            problems.append(f"search space: {unknown_keys([name], known, 'parameter')}")
            continue
        if not isinstance(spec, (_Interval, Choice)):
            problems.append(f"search space {name!r}: expected a FloatRange, IntRange or Choice, "
                            f"got {spec!r}")
            continue
        own = spec.problems()
        problems.extend(f"search space {name!r}: {problem}" for problem in own)
        if own or "default" not in method.presets:
            continue
        for value in spec.values_to_check():
            try:
                method._validated({name: value}, f"search space {name!r} at {value!r}")
            except OptionsError as exc:
                problems.append(str(exc))
    return problems


def check_space(method) -> None:
    """Raise :class:`OptionsError` naming the method and the parameter when its space is unsound
    or empty (a method that was never checked by a plugin registry, say)."""
    if not getattr(method, "search_space", None):
        raise OptionsError(f"method {method.name!r} declares no search space, so it cannot be "
                           "tuned (a Method's search_space names its tunable parameters)")
    problems = space_problems(method)
    if problems:
        raise OptionsError(f"method {method.name!r}: {'; '.join(problems)}")


def distributions(space: dict[str, Range]) -> dict:
    """Optuna's distribution of every parameter of ``space``."""
    return {name: spec.distribution() for name, spec in space.items()}


def decode(space: dict[str, Range], sampled: dict[str, Any]) -> dict[str, Any]:
    """The parameter values Optuna's ``sampled`` values stand for."""
    return {name: space[name].decode(value) for name, value in sampled.items()}


def encode(space: dict[str, Range], params: dict[str, Any]) -> dict[str, Any]:
    """Parameter values as Optuna holds them (the inverse of :func:`decode`)."""
    return {name: space[name].encode(params[name]) for name in space}


def within(space: dict[str, Range], params: dict[str, Any]) -> dict[str, Any] | None:
    """The values of ``params`` for the parameters of ``space``, when each lies in its range
    (None otherwise): a preset as a point of the space."""
    point = {name: params.get(name) for name in space}
    return point if all(space[name].contains(point[name]) for name in space) else None


def describe(space: dict[str, Range]) -> dict[str, dict]:
    """``space`` as plain data (stored with every tuning, part of its key)."""
    return {name: space[name].describe() for name in sorted(space)}
