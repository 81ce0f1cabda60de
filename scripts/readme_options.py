"""Rewrite README's generated option tables from the schemas: `python scripts/readme_options.py`."""

from __future__ import annotations

from pathlib import Path

from edgekit.recipes import option_tables

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- options:begin", "<!-- options:end -->"


def main() -> None:
    """Replace the text between the markers with `edgekit recipe schema --markdown`."""
    text = README.read_text()
    start = text.index("\n", text.index(BEGIN)) + 1
    README.write_text(text[:start] + option_tables() + text[text.index(END) :])


if __name__ == "__main__":
    main()
