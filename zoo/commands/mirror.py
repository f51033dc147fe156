"""``zoo mirror``: the mirrors the zoo reads cards from (``zoo.mirrors``), kept in $ZOO_HOME/config.yaml."""

from zoo.commands.base import Arguments, Command


def mirror(arguments: Arguments, reporter) -> int:
    from zoo import mirrors

    if arguments.get("add"):
        added = mirrors.add(arguments.get("add"))
        reporter.note(f"added {added.base} to {mirrors.config_path()}")
    if arguments.get("remove"):
        mirrors.remove(arguments.get("remove"))
        reporter.note(f"removed {arguments.get('remove')} from {mirrors.config_path()}")
    if not mirrors.configured():
        reporter.note(f"no mirror configured (zoo mirror add=URL, or {mirrors.ENV}=URL)")
    for one in mirrors.configured():
        try:
            state = f"{len(mirrors.read_index(one))} models"
        except mirrors.MirrorError as err:
            state = f"not readable: {err}"
        reporter.data(f"{one.base}\t{state}")
    return 0


COMMANDS = [Command("mirror", "list the mirrors model cards are read from (ZOO_MIRRORS, then $ZOO_HOME/config.yaml); "
                    "add or remove one",
                    mirror, keys={"add": "URL | DIR", "remove": "URL | DIR"})]
