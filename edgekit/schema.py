"""Typed option schemas: one dataclass per operation is the single source of its Click options, its
recipe checks, `--set` values, the JSON schema (`edgekit recipe schema`) and README's option tables.

A field is declared with `option(default, help=...)`. Its annotation is the type: bool, int, float,
str, Literal[...] (a fixed set of values), list[str], or a union of these with None. `low`/`high`
bound numbers; `flag` renames (or, as "", hides) the command-line option; `off` names a boolean's
negative flag. Nothing here imports more than click, so `edgekit --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, TypeVar

F = TypeVar("F", bound=Callable[..., object])
_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def option(
    default: object = dataclasses.MISSING,
    *,
    help: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    flag: str | None = None,
    off: str | None = None,
    flag_values: Mapping[str, str] | None = None,
    factory: Callable[[], object] | None = None,
) -> typing.Any:  # a dataclass field, typed as its default so that `x: int = option(...)` checks
    """A schema field: its default (or `factory`), help text, bounds and command-line spelling."""
    metadata = {"help": help, "low": low, "high": high, "low_open": low_open,
                "high_open": high_open, "flag": flag, "off": off,
                "flag_values": dict(flag_values or {})}  # fmt: skip
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One field of a schema, resolved: what values it takes and how it is spelled."""

    name: str
    kinds: tuple[type, ...]  # accepted types (bool, int, float, str, list, dict), None aside
    item: type  # a list's item type
    choices: tuple[str, ...] | None  # a Literal's values
    nullable: bool
    required: bool
    default: object
    help: str
    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    flag: str | None  # None: --name-with-dashes; "": not a command-line option
    off: str | None
    flag_values: dict[str, str]

    @property
    def cli_flag(self) -> str:
        """The command-line spelling."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def bool_flags(self) -> str:
        """A boolean's Click declaration: --flag alone when it defaults to off, else --on/--off."""
        if self.default is False and self.off is None:
            return self.cli_flag
        return f"{self.cli_flag}/{self.off or '--no-' + self.cli_flag.removeprefix('--')}"

    def bounds_words(self) -> str:
        """The bounds as Click writes ranges, e.g. 0<x<1 or x>=1; "" when unbounded."""
        low = "" if self.low is None else f"{_number(self.low)}{'<' if self.low_open else '<='}"
        high = "" if self.high is None else f"{'<' if self.high_open else '<='}{_number(self.high)}"
        if not low and not high:
            return ""
        if low and not high:
            return f"x{'>' if self.low_open else '>='}{_number(self.low)}"
        return f"{low}x{high}"

    def describe(self) -> str:
        """The type in words, for messages and README tables."""
        words = [" | ".join(self.choices)] if self.choices else [self._kind_word(kind) for kind in self.kinds]
        return " or ".join(words) + (" or null" if self.nullable else "")

    def _kind_word(self, kind: type) -> str:
        return f"list of {_NAMES[self.item]}" if kind is list else _NAMES[kind]

    def problem(self, value: object) -> str | None:
        """Why `value` does not fit this field, or None."""
        if value is None:
            return None if self.nullable else f"{self.name} must be {self.describe()}, not null"
        if not any(_is_kind(value, kind) for kind in self.kinds):
            return f"{self.name} must be {self.describe()}, not {value!r}"
        if isinstance(value, list) and not all(_is_kind(item, self.item) for item in value):
            return f"{self.name} must be a list of {_NAMES[self.item]}, not {value!r}"
        if self.choices and isinstance(value, str) and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, not {value!r}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._bound_problem(value)
        return None

    def _bound_problem(self, value: float) -> str | None:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"{self.name} must be {'above' if self.low_open else 'at least'} {_number(self.low)}, not {value!r}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"{self.name} must be {'below' if self.high_open else 'at most'} {_number(self.high)}, not {value!r}"
        return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_kind(value: object, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


@functools.cache
def specs(schema: type) -> tuple[OptionSpec, ...]:
    """The resolved fields of a schema dataclass, in declaration order."""
    hints = typing.get_type_hints(schema)
    return tuple(_spec(field, hints[field.name]) for field in dataclasses.fields(schema))


def _spec(field: dataclasses.Field[object], annotation: object) -> OptionSpec:
    kinds, item, choices, nullable = _unpack(annotation)
    meta = field.metadata
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = None if required else field.default
    return OptionSpec(
        name=field.name, kinds=kinds, item=item, choices=choices, nullable=nullable, required=required, default=default,
        help=meta.get("help", ""), low=meta.get("low"), high=meta.get("high"), low_open=meta.get("low_open", False),
        high_open=meta.get("high_open", False),
        flag=meta.get("flag"), off=meta.get("off"), flag_values=meta.get("flag_values", {}),
    )  # fmt: skip


def _unpack(annotation: object) -> tuple[tuple[type, ...], type, tuple[str, ...] | None, bool]:
    """(accepted types, list item type, Literal choices, None allowed) of an annotation."""
    parts = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    kinds: list[type] = []
    choices: list[str] = []
    item: type = str
    nullable = False
    for part in parts:
        origin = typing.get_origin(part)
        if part is type(None):
            nullable = True
        elif origin is Literal:
            choices += [str(value) for value in typing.get_args(part)]
            kinds.append(str)
        elif origin in (list, dict) or part in (list, dict):
            kinds.append(typing.cast(type, origin or part))
            item = (typing.get_args(part) or (str,))[0] if origin is list else item
        elif part in _NAMES:
            kinds.append(typing.cast(type, part))
        else:
            raise TypeError(f"schema type {part!r} is not supported")
    return tuple(dict.fromkeys(kinds)), item, tuple(choices) or None, nullable


def _is_union(annotation: object) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def problems(schema: type, values: Mapping[str, object]) -> list[tuple[str | None, str]]:
    """(key, message) for every unknown key, missing required key and ill-typed or out-of-range value."""
    known = {spec.name: spec for spec in specs(schema)}
    found: list[tuple[str | None, str]] = []
    for key, value in values.items():
        spec = known.get(key)
        message = f"unknown option {key!r} (known: {', '.join(known)})" if spec is None else spec.problem(value)
        if message:
            found.append((key, message))
    missing = [spec.name for spec in known.values() if spec.required and spec.name not in values]
    found += [(None, f"missing required option {name!r}") for name in missing]
    return found


def build(schema: type[object], values: Mapping[str, object], *, from_cli: bool = False) -> object:
    """The schema instance from `values` (tuples from Click become lists); BadInput names the first
    value the schema refuses (by its flag when `from_cli`)."""
    from edgekit.errors import BadInput

    known = {spec.name: spec for spec in specs(schema)}
    values = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items() if k in known}
    for key, message in problems(schema, values):
        spec = known.get(key or "")
        if from_cli and spec is not None:
            message = f"{spec.cli_flag} {message.removeprefix(spec.name + ' ')}"
        raise BadInput(message, fix="see --help" if from_cli else "see `edgekit recipe schema`")
    return schema(**values)


def shared_values(instance: object, schema: type) -> dict[str, object]:
    """The values of `schema`'s fields in `instance` (a subclass, or another schema with those fields)."""
    return {spec.name: getattr(instance, spec.name) for spec in specs(schema)}


def cli_options(schema: type, skip: Iterable[str] = ()) -> Callable[[F], F]:
    """A decorator adding one Click option per schema field (those with flag "" and `skip` aside)."""
    skipped = set(skip)

    def decorate(fn: F) -> F:
        for spec in reversed(specs(schema)):
            if spec.name not in skipped and spec.flag != "":
                for decorator in reversed(_click_options(spec)):
                    fn = decorator(fn)
        return fn

    return decorate


def _click_options(spec: OptionSpec) -> list[Callable[[F], F]]:
    import click

    bounds = spec.bounds_words()
    help_text = f"{spec.help}  [{bounds}]" if bounds else spec.help
    if spec.flag_values:  # several flags setting one field: --structured / --unstructured
        return [
            click.option(flag, spec.name, flag_value=value, default=True, help=help_text)
            if value == spec.default
            else click.option(flag, spec.name, flag_value=value, help=f"{spec.name}: {value} instead.")
            for flag, value in spec.flag_values.items()
        ]
    if spec.kinds == (bool,):
        flags = spec.bool_flags
        return [click.option(flags, spec.name, is_flag=True, default=spec.default, show_default=True, help=help_text)]
    kwargs: dict[str, object] = {"help": help_text, "required": spec.required}
    if list in spec.kinds:
        kwargs["multiple"] = True
    else:
        kwargs |= {"default": spec.default, "show_default": spec.default is not None}
    kwargs["type"] = _click_type(spec)
    return [click.option(spec.cli_flag, spec.name, **kwargs)]


def _click_type(spec: OptionSpec) -> object:
    """Click parses the type; bounds are the schema's, checked by `build` with the recipe's message."""
    import click

    if spec.choices:
        return click.Choice(list(spec.choices))
    if list in spec.kinds:
        return {int: int, float: float}.get(spec.item, click.STRING)
    if str in spec.kinds:
        return click.STRING
    return int if spec.kinds == (int,) else float


def json_schema(schema: type, title: str = "") -> dict[str, object]:
    """A JSON Schema (draft 2020-12) object for the schema's fields, for editors and `recipe schema`."""
    properties: dict[str, object] = {}
    for spec in specs(schema):
        types_ = [_JSON_TYPES[kind] for kind in spec.kinds] + (["null"] if spec.nullable else [])
        prop: dict[str, object] = {"type": types_[0] if len(types_) == 1 else types_, "description": spec.help}
        if spec.choices:
            prop["enum"] = [*spec.choices, *([None] if spec.nullable else [])]
        if list in spec.kinds:
            prop["items"] = {"type": _JSON_TYPES[spec.item]}
        if spec.low is not None:
            prop["exclusiveMinimum" if spec.low_open else "minimum"] = spec.low
        if spec.high is not None:
            prop["exclusiveMaximum" if spec.high_open else "maximum"] = spec.high
        if not spec.required:
            prop["default"] = spec.default
        properties[spec.name] = prop
    required = [spec.name for spec in specs(schema) if spec.required]
    out: dict[str, object] = {"type": "object", "additionalProperties": False, "properties": properties}
    return out | ({"required": required} if required else {}) | ({"title": title} if title else {})


def markdown_table(schema: type, flags: bool = True) -> str:
    """README's table of a schema: recipe key, command-line flag (when `flags`), type, default, meaning."""
    head = ["key", *(["flag"] if flags else []), "type", "default", "meaning"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for spec in specs(schema):
        default = "required" if spec.required else f"`{json.dumps(spec.default)}`"
        cells = [f"`{spec.name}`", *([_flag_words(spec)] if flags else []), spec.describe(), default, spec.help]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _flag_words(spec: OptionSpec) -> str:
    """How the field is spelled on the command line, for the README table ("–": recipes only)."""
    if spec.flag == "":
        return "–"
    if spec.flag_values:
        return ", ".join(f"`{flag}`" for flag in spec.flag_values)
    return f"`{spec.bool_flags if spec.kinds == (bool,) else spec.cli_flag}`"
