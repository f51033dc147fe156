"""The ``zoo`` command's subcommands: one module per family, each declaring its commands (``base.Command``: name,
help, accepted keys) and handling them, and the only layer that prints (``report.Reporter``).

``zoo.cli`` reads argv against these declarations; no module outside this package and the CLI imports it, so the
library underneath (training, evaluation, export, leaderboards) returns results and takes callbacks. Heavy imports
(torch, Lightning) happen inside the handlers, so ``zoo --help`` and ``zoo list`` answer at once.
"""

from zoo.commands import (
    bench,
    download,
    evaluate,
    export,
    infer,
    leaderboard,
    listing,
    mirror,
    publish,
    reproduce,
    retrieval,
    search,
    train,
)
from zoo.commands.base import Command

# In the order `zoo --help` lists them.
COMMANDS: dict[str, Command] = {command.name: command for module in (
    train, search, evaluate, reproduce, listing, export, infer, bench, publish, mirror, download, leaderboard,
    retrieval,
) for command in module.COMMANDS}
