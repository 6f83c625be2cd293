"""Settings read back from files (a checkpoint's ``config.json`` and the JSON files beside it),
checked field by field before anything is built from them.

A checkpoint folder is input like any other: a tampered or corrupt config must not allocate a
240 GB model, divide by zero heads, or slip a string in where a rate belongs. Each reader declares
what every field may hold with the rules below and checks them in one call; the first violation is
one line naming the file, the field, the value and what was expected::

    ckpt/config.json: model_config.n_layers = 1000000, expected an integer from 1 to 96

JSON has one number type, so ``1e9`` arrives as a float: an integer field refuses it, as it refuses
``true`` (bool is an int in Python) and ``"4"``. Bounds are generous, far beyond any model clinfm
trains, but finite.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from clinfm.errors import InputError

#: Bounds shared by every model: widths, depths, heads, vocabularies and lengths.
MAX_WIDTH = 8192
MAX_LAYERS = 96
MAX_HEADS = 256
MAX_FEED_FORWARD = 65_536
MAX_VOCABULARY = 10_000_000
MAX_LENGTH = 1_000_000
MAX_LABELS = 100_000


@dataclass(frozen=True)
class Rule:
    """What a field may hold: ``accepts(value)``, and what the message says was ``expected``."""

    expected: str
    accepts: Callable[[object], bool]
    #: For a list or an object, its type and the rule of its items: a message then points at the one
    #: item that is wrong (``std["LOINC/1"] = 0``) instead of showing the whole collection.
    items: tuple[type, Rule] | None = None

    def because(self, reason: str) -> Rule:
        """The same rule, its message followed by why."""
        return dataclasses.replace(self, expected=f"{self.expected} ({reason})")

    def problem(self, value: object) -> tuple[str, object, Rule] | None:
        """None if ``value`` is accepted; else where in it the problem is (``""``, ``"[3]"``), the part
        that is wrong and the rule it breaks."""
        if self.accepts(value):
            return None
        if self.items is not None and isinstance(value, self.items[0]):
            for key, part in value.items() if isinstance(value, dict) else enumerate(value):
                found = self.items[1].problem(part)
                if found is not None:
                    inner, wrong, rule = found
                    return f"[{shown(key)}]{inner}", wrong, rule
        return "", value, self  # the collection itself: its type, length or repeats


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _bound(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e7 else f"{value:g}"


def integer(low: int, high: int) -> Rule:
    return Rule(f"an integer from {low:,} to {high:,}", lambda v: _is_int(v) and low <= v <= high)


def number(low: float, high: float, *, below: bool = False) -> Rule:
    """A finite number from ``low`` to ``high``; with ``below``, ``high`` itself excluded."""
    expected = f"a number from {_bound(low)} to {_bound(high)}" + (
        f" ({_bound(high)} excluded)" if below else ""
    )
    return Rule(expected, lambda v: _is_number(v) and low <= v and (v < high if below else v <= high))


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def one_of(*choices: str) -> Rule:
    return Rule(f"one of {', '.join(choices)}", lambda v: isinstance(v, str) and v in choices)


def text() -> Rule:
    return Rule("a non-empty string", lambda v: isinstance(v, str) and bool(v))


def optional(rule: Rule) -> Rule:
    return Rule(f"{rule.expected}, or null", lambda v: v is None or rule.accepts(v), rule.items)


def each(rule: Rule, low: int, high: int, *, unique: bool = False) -> Rule:
    """A list of ``low`` to ``high`` items, each accepted by ``rule``, all different with ``unique``."""
    kind = "distinct items" if unique else "items"

    def accepts(value: object) -> bool:
        if not isinstance(value, list) or not low <= len(value) <= high:
            return False
        return all(rule.accepts(item) for item in value) and (not unique or len(set(value)) == len(value))

    return Rule(f"a list of {low:,} to {high:,} {kind}, each {rule.expected}", accepts, (list, rule))


def pair(first: Rule, second: Rule) -> Rule:
    def accepts(value: object) -> bool:
        return (
            isinstance(value, list)
            and len(value) == 2
            and first.accepts(value[0])
            and second.accepts(value[1])
        )

    return Rule(f"a pair of ({first.expected}) and ({second.expected})", accepts)


def mapping(rule: Rule, high: int) -> Rule:
    """An object of at most ``high`` entries, each value accepted by ``rule`` (JSON keys are strings)."""

    def accepts(value: object) -> bool:
        return isinstance(value, dict) and len(value) <= high and all(rule.accepts(v) for v in value.values())

    return Rule(f"an object of at most {high:,} entries, each {rule.expected}", accepts, (dict, rule))


def shown(value: object) -> str:
    """``value`` as it reads in the file, cut short."""
    try:
        written = json.dumps(value)
    except (TypeError, ValueError):
        written = repr(value)
    return written if len(written) <= 60 else f"{written[:57]}..."


def _label(name: str, section: str | None) -> str:
    return f"{section}.{name}" if section else name


def check_field(values: Mapping, name: str, rule: Rule, where: object, section: str | None = None) -> object:
    """``values[name]`` if ``rule`` accepts it; else InputError naming ``where``, the field, its value
    and what was expected. ``section`` is the object of the file the values come from, if any."""
    if name not in values:
        raise InputError(f"{_label(name, section)} is missing, expected {rule.expected}", path=where)
    found = rule.problem(values[name])
    if found is not None:
        inner, wrong, broken = found
        raise InputError(
            f"{_label(name, section)}{inner} = {shown(wrong)}, expected {broken.expected}", path=where
        )
    return values[name]


def nested(values: Mapping, name: str, where: object, *, optional: bool = False) -> dict | None:
    """The object ``values[name]`` of a file (a config's ``model_config``); None when ``optional`` and
    absent or null."""
    if optional and values.get(name) is None:
        return None
    return check_field(values, name, Rule("an object", lambda v: isinstance(v, dict)), where)


def check_fields(
    values: object,
    rules: Mapping[str, Rule],
    where: object,
    *,
    section: str | None = None,
    required: tuple[str, ...] = (),
    ignore_unknown: bool = False,
) -> dict:
    """``values`` if it is an object whose fields the ``rules`` accept. Fields in ``required`` must be
    there; other fields may be left out; a field without a rule is refused (``ignore_unknown``: let
    through, for files that carry more than this reader uses)."""
    if not isinstance(values, dict):
        what = f"{section} = " if section else "holds "
        raise InputError(f"{what}{shown(values)}, expected an object", path=where)
    unknown = sorted(set(values) - set(rules))
    if unknown and not ignore_unknown:
        raise InputError(
            f"{_label(unknown[0], section)} is not a known setting (expected {', '.join(rules)})", path=where
        )
    for name, rule in rules.items():
        if name in values or name in required:
            check_field(values, name, rule, where, section)
    return values


@contextmanager
def located(where: object) -> Iterator[None]:
    """Name ``where`` in an InputError raised inside that does not name a file yet (a dataclass's own
    cross-field checks)."""
    try:
        yield
    except InputError as error:
        if error.path is not None or where is None:
            raise
        raise InputError(str(error), path=where) from None


def config_from(
    cls: type,
    values: object,
    rules: Mapping[str, Rule],
    where: object,
    *,
    section: str | None = None,
    convert: Mapping[str, Callable] | None = None,
    ignore_unknown: bool = False,
):
    """The dataclass ``cls`` from ``values``, every field checked by its rule first. Fields without a
    default must be present; ``convert`` turns checked JSON values into the field's type (lists into
    tuples). Every field needs a rule: one without is a bug, caught when the reader first runs."""
    names = [field.name for field in dataclasses.fields(cls)]
    if set(names) != set(rules):
        raise TypeError(f"{cls.__name__}: fields and rules differ in {sorted(set(names) ^ set(rules))}")
    required = tuple(
        field.name
        for field in dataclasses.fields(cls)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    )
    check_fields(values, rules, where, section=section, required=required, ignore_unknown=ignore_unknown)
    kwargs = {name: values[name] for name in names if name in values}
    for name, to in (convert or {}).items():
        if kwargs.get(name) is not None:
            kwargs[name] = to(kwargs[name])
    with located(where):
        return cls(**kwargs)
