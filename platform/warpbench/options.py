"""Declared options: one way to validate a method's presets, a ``datasets.yaml`` block or a suite.

Every set of options is a pydantic model derived from :class:`Settings`, so an unknown key is an
error rather than a silently ignored typo, values arrive typed (``settings.lncc_window``, not
``settings["lncc_window"]``) and the models' field docs become the JSON Schema's descriptions.
:func:`validate` turns pydantic's multi-line report into the one line a user reads, naming
where the options came from, the key, and (for an unknown key) the known ones::

    datasets.yaml: dataset 'synth-a' (synthetic): unknown option 'noize'; known: bias, blur, ...
    datasets.yaml: dataset 'synth-a' (synthetic): option 'split.train': must be ..., got -1
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError
from pydantic import WrapValidator
from pydantic_core import PydanticCustomError


#: pydantic's error types for a value that should have been a mapping of options.
MAPPING_ERRORS = ("model_type", "model_attributes_type", "dict_type")


class OptionsError(ValueError):
    """Options that do not validate; the message is one line naming where they came from."""


class Settings(BaseModel):
    """The base of every options model: unknown keys are errors, attribute docstrings are the
    fields' descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def number(**constraints):
    """An int or a float, kept as given (a split's ``1`` is a count, ``1.0`` a fraction), under
    pydantic's ``constraints`` (``ge=0``, ``gt=0``)."""
    return (Annotated[StrictInt, Field(**constraints)]
            | Annotated[StrictFloat, Field(allow_inf_nan=False, **constraints)])


def must_be(wanted: str) -> WrapValidator:
    """Validation metadata replacing whatever pydantic says about a bad value (several lines for
    a union) with one ``must be <wanted>``."""

    def one_message(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("invalid", "must be {wanted}", {"wanted": wanted}) from None

    return WrapValidator(one_message)


def validate(model: type[Settings], data: Any, where: str, noun: str,
             error: type[Exception] = OptionsError) -> Any:
    """``data`` as an instance of ``model``, or ``error("<where>: <one line>")``; ``noun`` is what
    a key is called there (option, parameter, key)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{where}: {describe(exc, model, noun)}") from None


def describe(error: ValidationError, model: type[BaseModel] | None, noun: str) -> str:
    """pydantic's ``error`` about ``model``'s input as one line."""
    unknown: dict[tuple, list[str]] = {}  # the unknown keys of each model along the input
    phrases = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"])
        kind, message = item["type"], item["msg"]
        if kind == "extra_forbidden":
            unknown.setdefault(item["loc"][:-1], []).append(loc)
        elif kind == "missing":
            phrases.append(f"missing {noun} {loc!r}{_field_doc(model, item['loc'])}")
        else:
            if kind in MAPPING_ERRORS:  # pydantic names the model class, which the user never saw
                message = "must be a mapping"
            message = message.removeprefix("Value error, ").replace("Input should be", "must be")
            got = "" if kind == "value_error" else f", got {item['input']!r}"
            phrases.append(f"{noun} {loc!r}: {message}{got}" if loc else f"{message}{got}")
    # A misspelt key first: a required key missing is its consequence.
    misspelt = [unknown_keys(keys, _known_keys(model, parent), noun)
                for parent, keys in unknown.items()]
    return "; ".join(misspelt + phrases)


def unknown_keys(keys: list[str], known, noun: str) -> str:
    """The phrase for unknown keys, with the known ones to choose from."""
    named = ", ".join(repr(key) for key in keys)
    plural = "s" if len(keys) > 1 else ""
    return f"unknown {noun}{plural} {named}; known: {', '.join(sorted(known)) or 'none'}"


def _known_keys(model: type[BaseModel] | None, path) -> list[str]:
    """The fields of the model found at ``path`` (field names) inside ``model``."""
    found = _model_at(model, path)
    return list(found.model_fields) if found else []


def _field_doc(model: type[BaseModel] | None, path) -> str:
    """``" (<description>)"`` of the field at ``path``, when it has one."""
    parent = _model_at(model, path[:-1])
    field = parent.model_fields.get(path[-1]) if parent else None
    return f" ({field.description.strip().rstrip('.')})" if field and field.description else ""


def _model_at(model: type[BaseModel] | None, path) -> type[BaseModel] | None:
    """The model that the fields named by ``path`` lead to from ``model`` (None: no model)."""
    for name in path:
        field = model.model_fields.get(name) if model else None
        model = _model_in(field.annotation) if field else None
    return model


def _model_in(annotation) -> type[BaseModel] | None:
    """The model an annotation holds (``Split``, ``Split | None``, ``Annotated[Split, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, Annotated):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found:
                return found
    return None
