"""JSON-shaped data: what sidecars, step metrics, reports and `--json` output hold."""

from __future__ import annotations

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
Json = dict[str, JsonValue]  # a JSON object
