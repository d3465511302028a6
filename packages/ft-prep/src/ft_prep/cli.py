"""ft-prep command line (not built yet: see its issue)."""

import click

from ft_common.cli import CONTEXT_SETTINGS, common_options, run
from ft_common.errors import FtError


@click.command(context_settings=CONTEXT_SETTINGS)
@common_options
def cli(quiet: bool) -> None:
    """ft-prep (not built yet)."""
    raise FtError("ft-prep is not built yet")


def main() -> None:
    run(cli, "ft-prep")
