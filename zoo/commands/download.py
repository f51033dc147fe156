"""``zoo download NAME``: a model card's weights fetched and verified, by name from any source (``zoo.catalog``:
built-in, $ZOO_HOME/models/, mirrors, hf-hub:org/repo); prints where they are, and on stderr what they were
checked against ("unverified" when the card publishes no sha256)."""

from zoo.commands.base import Arguments, Command


def download(arguments: Arguments, reporter) -> int:
    from zoo import catalog, hfhub, hub

    card, path = catalog.download(arguments.positional)
    reporter.data(str(path))
    if hfhub.is_hub_name(arguments.positional):
        reporter.note(f"verified: sha256 {card.weights.sha256} from card.yaml of {card.weights.urls[0]}")
    else:
        reporter.note(hub.verification(card))
    return 0


COMMANDS = [Command("download", "fetch and verify a model card's weights by name (any source, hf-hub:org/repo), "
                    "print their path", download, positional="NAME", positional_required=True)]
