"""One way to declare, parse and check every section of a scenario.

A section (``[lr]``, ``[secureboost]``, ``[psi]``, ``[horizontal]``, ...) is a dataclass that
inherits :class:`Settings`. Each field is declared once with :func:`setting`: its default, a
one-line description, and its constraint. From that single declaration come

* the parser (:meth:`Settings.from_section`): unknown keys are rejected with the key named, every
  value is type-checked against the field's annotation (``bool`` is never taken for ``int``,
  numbers must be finite), nested tables become nested sections;
* the checks, which also run when code builds a section directly (tests, notebooks);
* the documentation: :func:`describe` lists key, type, default, constraint and description, which
  is what ``fedcredit config show`` prints, so the docs cannot drift from the code.

Every error is a :class:`ConfigError` that names the section and key, e.g.
``[lr] epochs = 0: must be >= 1``.

Cross-field rules (``key_bits`` may be small only with ``insecure_test_key``) go in
:meth:`Settings.validate`, a template hook that runs after the per-field checks.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="Settings")


class ConfigError(ValueError):
    """A scenario file or one of its settings is missing, unknown, mistyped or out of range.

    Every configuration error in fedcredit derives from this one class, so callers (the CLI, the
    coordinator) catch one type; the message names the section and key.
    """


@dataclass(frozen=True)
class Rule:
    """The constraint on one setting, declared with it and printed by ``config show``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    power_of_two: bool = False

    def violation(self, value: Any) -> str | None:
        """Why ``value`` breaks the rule, or None. Sequences are checked element by element."""
        if isinstance(value, tuple):
            for v in value:
                why = self.violation(v)
                if why:
                    return f"every element {why}"
            return None
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(repr(c) for c in self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.ge is not None and not value >= self.ge:
            return f"must be >= {_num(self.ge)}"
        if self.gt is not None and not value > self.gt:
            return f"must be > {_num(self.gt)}"
        if self.le is not None and not value <= self.le:
            return f"must be <= {_num(self.le)}"
        if self.lt is not None and not value < self.lt:
            return f"must be < {_num(self.lt)}"
        if self.power_of_two and (value <= 0 or int(value) & (int(value) - 1)):
            return "must be a power of two"
        return None

    def describe(self) -> str:
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        lower = f">= {_num(self.ge)}" if self.ge is not None else f"> {_num(self.gt)}" if self.gt is not None else ""
        upper = f"<= {_num(self.le)}" if self.le is not None else f"< {_num(self.lt)}" if self.lt is not None else ""
        parts += [p for p in (lower, upper) if p]
        if self.power_of_two:
            parts.append("power of two")
        return ", ".join(parts)


def _num(v: float | None) -> str:
    """A bound as people write it: 4294967296 rather than 4.29497e+09, 0.5 as 0.5."""
    if v is not None and float(v).is_integer():
        return str(int(v))
    return repr(v)


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
    power_of_two: bool = False,
    convert: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare one setting: default, description, constraint (and an optional input ``convert``).

    ``convert`` maps accepted spellings to the canonical value before type checking (e.g. the
    string ``"none"`` to ``None``). Defaults of nested sections are built fresh per instance.
    """
    meta = {"doc": doc, "rule": Rule(ge, gt, le, lt, choices, power_of_two), "convert": convert}
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    """Base of every scenario section. Subclasses are dataclasses of :func:`setting` fields.

    ``SECTION`` is the TOML table name used in error messages (``"lr"``, ``"horizontal.dp"``).
    """

    SECTION: ClassVar[str] = "settings"
    error_type: ClassVar[type[ConfigError]] = ConfigError  # a section may raise a subclass

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                checked = _check_value(value, hints[f.name], f, f"[{self.SECTION}] {f.name}")
            except ConfigError as exc:
                raise self.error_type(str(exc)) from None
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        self.validate()

    def validate(self) -> None:
        """Hook: cross-field rules. Raise :meth:`fail` (a ConfigError) naming the key."""

    def fail(self, key: str, why: str) -> ConfigError:
        """An error for ``key`` with its current value, in the one format all sections use."""
        return self.error_type(f"[{self.SECTION}] {key} = {getattr(self, key)!r}: {why}")

    @classmethod
    def from_section(cls: type[S], table: Mapping[str, Any] | None) -> S:
        """Parse a TOML table: unknown keys rejected (named), nested tables parsed recursively."""
        table = dict(table or {})
        hints = _hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise cls.error_type(f"[{cls.SECTION}] unknown key(s) {unknown}; allowed: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for name, value in table.items():
            sub = _section_type(hints[name])
            if sub is not None:
                if not isinstance(value, Mapping):
                    raise cls.error_type(f"[{cls.SECTION}] {name} must be a table ([{sub.SECTION}])")
                value = sub.from_section(value)
            elif _tuple_of_sections(hints[name]) is not None:
                item = _tuple_of_sections(hints[name])
                assert item is not None
                if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                    raise cls.error_type(f"[{cls.SECTION}] {name} must be an array of tables")
                value = tuple(item.from_section(v) for v in value)
            kwargs[name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- description ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingDoc:
    key: str
    type: str
    default: Any
    rule: str
    doc: str


def describe(cls: type[Settings], values: Settings | None = None) -> list[SettingDoc]:
    """One row per setting (nested sections flattened as ``secagg.num_shares``); ``default`` is
    the value in ``values`` when given (the effective setting), else the declared default."""
    rows: list[SettingDoc] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        current = getattr(values, f.name) if values is not None else _default_of(f)
        sub = _section_type(hints[f.name])
        if sub is not None:
            for r in describe(sub, current):
                rows.append(dataclasses.replace(r, key=f"{f.name}.{r.key}"))
            continue
        rule = f.metadata.get("rule")
        rows.append(
            SettingDoc(
                key=f.name,
                type=_type_name(hints[f.name]),
                default=current,
                rule=rule.describe() if rule else "",
                doc=f.metadata.get("doc", ""),
            )
        )
    return rows


# -- internals --------------------------------------------------------------------------------
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _section_type(tp: Any) -> type[Settings] | None:
    return tp if isinstance(tp, type) and issubclass(tp, Settings) else None


def _tuple_of_sections(tp: Any) -> type[Settings] | None:
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return _section_type(args[0])
    return None


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "none"
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return {"int": "integer", "float": "number", "str": "string", "bool": "true/false"}.get(
            tp.__name__, tp.__name__
        )
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return str(tp)


def _check_value(value: Any, tp: Any, f: dataclasses.Field[Any], where: str) -> Any:
    convert = f.metadata.get("convert")
    if convert is not None:
        value = convert(value)
    value = _coerce(value, tp, where)
    rule = f.metadata.get("rule")
    if rule is not None:
        why = rule.violation(value)
        if why:
            raise ConfigError(f"{where} = {value!r}: {why}")
    return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (int->float widening, list->tuple), or a ConfigError naming it."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where} = {value!r}: must be {_type_name(tp)}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where} = {value!r}: must be absent")
        return None
    if tp is Any:
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: must be a {_type_name(tp)}")
        item = args[0]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: must be an integer")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: must be a string")
        return value
    if isinstance(tp, type) and issubclass(tp, Settings):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: must be a [{tp.SECTION}] table")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} = {value!r}: must be {_type_name(tp)}")
    return value
