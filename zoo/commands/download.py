"""``zoo download NAME``: a model card's weights fetched and verified; prints where they are, and on stderr what they
were checked against ("unverified" when the card publishes no sha256)."""

from zoo.commands.base import Arguments, Command


def download(arguments: Arguments, reporter) -> int:
    from zoo import hub
    from zoo.cards import get_card

    card = get_card(arguments.positional)
    reporter.data(str(hub.download(card)))
    reporter.note(hub.verification(card))
    return 0


COMMANDS = [Command("download", "fetch and verify a model card's weights, print their path", download,
                    positional="NAME", positional_required=True)]
