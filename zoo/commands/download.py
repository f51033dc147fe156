"""``zoo download NAME``: a model card's weights fetched and verified, by name from any source (``zoo.catalog``:
built-in, $ZOO_HOME/models/, mirrors); prints where they are, and on stderr what they were
checked against ("unverified" when the card publishes no sha256)."""

from zoo.commands.base import Arguments, Command


def download(arguments: Arguments, reporter) -> int:
    from zoo import catalog, hub

    card, path = catalog.download(arguments.positional)
    reporter.data(str(path))
    reporter.note(hub.verification(card))
    return 0


COMMANDS = [Command("download", "fetch and verify a model card's weights by name (any source), print their path",
                    download, positional="NAME", positional_required=True)]
