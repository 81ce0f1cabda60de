"""`edgekit devices`."""

from __future__ import annotations

import click

from edgekit.cli.options import json_option


@click.command("devices")
@json_option
def devices_command(as_json: bool) -> None:
    """List the device profiles and what this host actually has."""
    import dataclasses

    from edgekit.devices import builtin_profiles, host_facts
    from edgekit.report import print_devices, print_json

    profiles, host = builtin_profiles(), host_facts()
    if as_json:
        print_json({"profiles": [dataclasses.asdict(p) for p in profiles.values()], "host": host})
    else:
        print_devices(profiles, host)
