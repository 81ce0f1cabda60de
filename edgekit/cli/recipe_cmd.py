"""`edgekit recipe run|validate FILE` and `edgekit report DIR`."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import json_option

_set_option = click.option(
    "--set", "overrides", multiple=True, help="Override a value: key.path=value (steps numbered from 1)."
)


@click.group("recipe")
def recipe_group() -> None:
    """Recipes: a model, its data, a device and the steps, in one YAML file."""


@recipe_group.command("validate")
@click.argument("recipe", type=click.Path(path_type=Path))
@_set_option
@json_option
def validate_command(recipe: Path, overrides: tuple[str, ...], as_json: bool) -> None:
    """Check RECIPE without running anything: every problem is listed with its line (exit 3)."""
    from edgekit.recipes import RecipeError, load_recipe
    from edgekit.report import print_json

    try:
        loaded = load_recipe(recipe, list(overrides))
    except RecipeError as exc:
        if as_json:
            print_json({"recipe": str(recipe), "valid": False, "problems": exc.problems})
        raise
    if as_json:
        steps = [{"step": spec.name, "line": spec.line, "options": _plain(spec.config)} for spec in loaded.steps]
        print_json(
            {"recipe": str(recipe), "valid": True, "model": loaded.model, "device": loaded.device, "steps": steps}
        )
        return
    steps = " -> ".join(spec.name for spec in loaded.steps)
    click.echo(f"✓ {recipe}: {loaded.model} on {loaded.device}: {steps}")


def _plain(config: object) -> dict[str, object]:
    """A step config as JSON-ready values."""
    import dataclasses

    return {key: value if isinstance(value, (str, int, float, bool, list, type(None))) else str(value)
            for key, value in dataclasses.asdict(config).items()}  # fmt: skip


@recipe_group.command("schema")
@click.option("--markdown", is_flag=True, help="Print README's option tables instead of the JSON Schema.")
def schema_command(markdown: bool) -> None:
    """Print the JSON Schema of recipe files (for editors), or the option tables of every step."""
    from edgekit.recipes import option_tables, recipe_schema
    from edgekit.report import print_json

    click.echo(option_tables(), nl=False) if markdown else print_json(recipe_schema())


@recipe_group.command("run")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Run folder (default: runs/<recipe name>).")
@click.option("--force", is_flag=True, help="Rerun every step even if its inputs did not change.")
@_set_option
@json_option
def run_command(recipe: Path, out: Path | None, force: bool, overrides: tuple[str, ...], as_json: bool) -> None:
    """Run RECIPE's steps into OUT/NN_step/, reusing unchanged steps; write report.md/.json/.png."""
    from edgekit.recipes import load_recipe
    from edgekit.recipes.runner import run_recipe
    from edgekit.report import print_json, print_recipe_run, progress_printer

    loaded = load_recipe(recipe, list(overrides))
    result = run_recipe(loaded, out or Path("runs") / loaded.name, force, progress_printer(quiet=as_json))
    if as_json:
        import json

        print_json(json.loads((result.out / "report.json").read_text()))
    else:
        print_recipe_run(result)


@click.command("report")
@click.argument("folder", type=click.Path(path_type=Path))
@json_option
def report_command(folder: Path, as_json: bool) -> None:
    """Regenerate report.md, report.json and report.png of a recipe run FOLDER."""
    from edgekit.recipes.report import write_report
    from edgekit.report import print_json

    path = write_report(folder)
    if as_json:
        import json

        print_json(json.loads((folder / "report.json").read_text()))
    else:
        click.echo(path.read_text())
