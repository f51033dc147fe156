"""``zoo download NAME``: a model card's weights fetched and verified; prints where they are."""

from zoo.commands.base import Arguments, Command


def download(arguments: Arguments, reporter) -> int:
    from zoo import hub
    from zoo.cards import get_card

    reporter.data(str(hub.download(get_card(arguments.positional))))
    return 0


COMMANDS = [Command("download", "fetch and verify a model card's weights, print their path", download,
                    positional="NAME", positional_required=True)]
