"""The options a command was given, as a command line for the same command elsewhere (on a board)."""

from __future__ import annotations

import click


def forwarded_flags(ctx: click.Context, skip: set[str]) -> list[str]:
    """`ctx`'s options that differ from their defaults, as argv (`skip`: parameter names left out,
    e.g. paths that the caller copies and rewrites itself)."""
    argv: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in skip:
            continue
        value = ctx.params.get(param.name or "")
        if value is None or value == param.default or (param.multiple and not value):
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value or param.secondary_opts:  # a plain flag that is off is its default
                argv.append(flag if value else max(param.secondary_opts, key=len))
        elif param.multiple:
            argv += [part for item in value for part in (flag, str(item))]
        else:
            argv += [flag, str(value)]
    return argv
