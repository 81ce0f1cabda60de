"""One typed schema per operation: the Click options, the recipe checks, the JSON schema and README's
tables all come from it, so they cannot drift apart."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from edgekit import schema
from edgekit.cli.main import cli
from edgekit.recipes import SECTIONS, option_tables, recipe_schema
from edgekit.recipes.steps import BOARD_FIELDS, STEPS, step_class

ROOT = Path(__file__).resolve().parents[1]
# command -> (schema, fields the command takes another way)
COMMANDS = {
    "quantize": ("quantize", ("input", *BOARD_FIELDS)),  # board fields: board_options' --device/--emulate/...
    "convert": ("convert", ("input",)),
    "prune": ("prune", ()),
    "validate": ("validate", BOARD_FIELDS),
    "bench": ("bench", ()),
    "compile": ("compile", ()),
}


def _command(name: str) -> click.Command:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    return command


def test_readme_option_tables_are_the_schemas() -> None:
    """README's tables are exactly what `edgekit recipe schema --markdown` prints."""
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- options:begin")
    block = readme[readme.index("\n", begin) + 1 : readme.index("<!-- options:end -->")]
    assert block == option_tables(), "README is stale: run `python scripts/readme_options.py`"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_schema_field_is_a_command_option_with_its_default(name: str) -> None:
    """Each field of the step's schema is an option of the command, with the schema's default and type."""
    step, skipped = COMMANDS[name]
    params = {p.name: p for p in _command(name).params if isinstance(p, click.Option)}
    for spec in schema.specs(step_class(step).Config):
        if spec.name in skipped or spec.flag == "":
            continue
        assert spec.name in params, f"{name}: {spec.name} is not an option"
        param = params[spec.name]
        if spec.flag_values:
            assert {p.flag_value for p in _command(name).params if p.name == spec.name} == set(
                spec.flag_values.values()
            )
            continue
        if spec.choices:
            assert list(param.type.choices) == list(spec.choices), f"{name} {spec.name}"
        if list in spec.kinds:
            assert param.multiple
        else:
            assert param.default == spec.default, f"{name} {spec.name}: {param.default!r} != {spec.default!r}"


def test_every_field_says_what_it_does() -> None:
    configs = [step_class(name).Config for name in STEPS] + list(SECTIONS.values())
    for config in configs:
        for spec in schema.specs(config):
            assert len(spec.help) > 8, f"{config.__name__}.{spec.name} has no help"


def test_fixed_sets_agree_with_the_library() -> None:
    """The Literal types are the library's own sets (CPU presets, preprocessing presets)."""
    from edgekit.cli.options import PRESET_NAMES
    from edgekit.preprocess import PRESETS
    from edgekit.quantize.cpu import PRESETS as CPU_PRESETS
    from edgekit.quantize.settings import CpuName
    from edgekit.recipes import Preset

    assert list(typing.get_args(CpuName)) == ["auto", *CPU_PRESETS]
    assert list(typing.get_args(Preset)) == list(PRESETS) == PRESET_NAMES


@dataclasses.dataclass
class _Example:
    """A schema exercising every kind of field."""

    size: int = schema.option(help="a bounded integer", low=1, high=10)
    share: float = schema.option(0.5, help="a share", low=0, low_open=True, high=1, high_open=True)
    mode: typing.Literal["a", "b"] = schema.option("a", help="one of a set")
    names: list[str] = schema.option(factory=list, help="a list of strings")
    shape: list[int] | None = schema.option(None, help="a list of integers or null")
    budget: str | float | None = schema.option(None, help="text or a number")
    flag: bool = schema.option(False, help="a switch")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "missing required option 'size'"),
        ({"size": 0}, "size must be at least 1, not 0"),
        ({"size": 11}, "size must be at most 10, not 11"),
        ({"size": 2.5}, "size must be int, not 2.5"),
        ({"size": True}, "size must be int, not True"),
        ({"size": 2, "share": 0}, "share must be above 0, not 0"),
        ({"size": 2, "share": 1}, "share must be below 1, not 1"),
        ({"size": 2, "mode": "c"}, "mode must be one of a, b, not 'c'"),
        ({"size": 2, "names": "x"}, "names must be list of str, not 'x'"),
        ({"size": 2, "names": [1]}, "names must be a list of str, not [1]"),
        ({"size": 2, "shape": [1, "x"]}, "shape must be a list of int"),
        ({"size": 2, "budget": []}, "budget must be str or float or null"),
        ({"size": 2, "flag": "yes"}, "flag must be bool, not 'yes'"),
        ({"size": 2, "colour": "red"}, "unknown option 'colour' (known: size, share,"),
    ],
)
def test_problems_name_the_key_and_the_rule(values: dict[str, object], message: str) -> None:
    found = schema.problems(_Example, values)
    assert len(found) == 1 and found[0][1].startswith(message), found


def test_good_values_build_and_ints_count_as_floats() -> None:
    assert schema.problems(_Example, {"size": 3, "share": 0.2, "budget": 0.9, "shape": [1, 3], "names": ["a"]}) == []
    built = schema.build(_Example, {"size": 3, "names": ("a", "b")})
    assert isinstance(built, _Example) and built.names == ["a", "b"] and built.share == 0.5


def test_generated_click_options_parse_and_check_bounds() -> None:
    """The generated options parse every kind; bounds are checked by the schema with the flag named."""

    @click.command()
    @schema.cli_options(_Example)
    def command(**values: object) -> None:
        click.echo(repr(schema.build(_Example, values, from_cli=True)))

    good = CliRunner().invoke(command, ["--size", "3", "--mode", "b", "--names", "x", "--names", "y", "--flag"])
    assert good.exit_code == 0 and "names=['x', 'y']" in good.output and "flag=True" in good.output
    bad = CliRunner().invoke(command, ["--size", "30"])
    assert bad.exit_code != 0 and "--size must be at most 10, not 30" in str(bad.exception)


def test_a_command_and_a_recipe_refuse_a_value_in_the_same_words(torch_models: dict[str, Path], tmp_path: Path) -> None:
    """`quantize --max-float-layers -1` and `max_float_layers: -1` give the same rule, exit 3, nothing run."""
    result = CliRunner().invoke(cli, ["quantize", str(torch_models["pt2"]), "--max-float-layers", "-1"])
    assert result.exit_code == 3 and "--max-float-layers must be at least 0, not -1" in result.stderr
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{path: {torch_models['pt2']}}}\ndata: {{calibration: bundled, validation: bundled}}\n"
        "steps:\n  - quantize: {max_float_layers: -1}\n"
    )
    result = CliRunner().invoke(cli, ["recipe", "validate", str(recipe)])
    assert result.exit_code == 3 and "max_float_layers must be at least 0, not -1" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_json_schema_accepts_the_shipped_recipes_and_refuses_mistakes() -> None:
    """`edgekit recipe schema` is a valid JSON Schema that every shipped recipe passes and that catches
    the mistakes `recipe validate` catches by type (unknown keys, values outside a set, bounds)."""
    import jsonschema

    result = CliRunner().invoke(cli, ["recipe", "schema"])
    assert result.exit_code == 0
    import json

    document = json.loads(result.stdout)
    assert document == recipe_schema()
    validator = jsonschema.Draft202012Validator(document)
    validator.check_schema(document)
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path.name}: {errors[0].message}"
    base = {"model": "m.pt2", "steps": [{"convert": {"to": "onnx"}}]}
    for step in ({"quantize": {"method": "kl"}}, {"quantize": {"min_speedup": 0}}, {"teleport": {}},
                 {"convert": {"to": "coreml"}}, {"prune": {"amount": 1.5}}, {"quantize": {"colour": 1}}):  # fmt: skip
        assert list(validator.iter_errors(base | {"steps": [step]})), step
