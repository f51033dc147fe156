"""How a subcommand is declared and how its ``key=value`` arguments are read.

Every command module declares its commands as ``Command`` objects: the name, one line of help, the keys it
accepts (and which of them it needs), whether it also takes config overrides (``trainer.max_epochs=3``,
``method=ce``) or one positional name, and its handler ``run(arguments, reporter) -> exit code``. A key the command
does not accept is an error naming the nearest one, never silently ignored.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from zoo.errors import ConfigError, did_you_mean


@dataclass
class Arguments:
    values: dict[str, str] = field(default_factory=dict)      # key=value arguments the command accepts
    repeated: dict[str, list[str]] = field(default_factory=dict)  # keys that may be given more than once
    overrides: list[str] = field(default_factory=list)        # config overrides, for commands that take them
    positional: str | None = None

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def integer(self, key: str, default: int | None = None, minimum: int = 0) -> int | None:
        if key not in self.values:
            return default
        text = self.values[key]
        if not text.isdigit() or int(text) < minimum:
            raise ConfigError(f"{key} must be an integer of at least {minimum}, got '{text}'",
                              f"give {key}=N with N >= {minimum}, or leave {key}= out for its default")
        return int(text)

    def number(self, key: str, default: float) -> float:
        if key not in self.values:
            return default
        try:
            return float(self.values[key])
        except ValueError:
            raise ConfigError(f"{key} must be a number, got '{self.values[key]}'") from None

    def integers(self, key: str) -> list[int] | None:
        """``1,8,32`` as [1, 8, 32]."""
        if key not in self.values:
            return None
        parts = self.values[key].split(",")
        if not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ConfigError(f"{key} must look like 1,8,32 (positive integers), got '{self.values[key]}'")
        return [int(p) for p in parts]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str                                 # one line for `zoo --help` and `zoo NAME --help`
    run: Callable[[Arguments, object], int]      # (arguments, reporter) -> exit code
    keys: dict[str, str] = field(default_factory=dict)   # key -> what its value is, e.g. {"run": "RUN_DIR"}
    required: tuple[str, ...] = ()
    repeatable: tuple[str, ...] = ()             # keys of ``keys`` that may come several times (zoo leaderboard add=)
    overrides: bool = False                      # takes config overrides besides its keys
    positional: str | None = None                # the name of one positional argument (zoo download NAME)
    positional_required: bool = False
    choices: tuple[str, ...] = ()                # allowed positional values, if fixed

    def usage(self) -> str:
        parts = [f"zoo {self.name}"]
        if self.positional:
            parts.append(self.positional if self.positional_required else f"[{self.positional}]")
        for key, what in self.keys.items():
            if key in self.repeatable:
                parts.append(f"[{key}={what} ...]")
            else:
                parts.append(f"{key}={what}" if key in self.required else f"[{key}={what}]")
        if self.overrides:
            parts.append("[key=value ...]")
        return " ".join(parts)

    def parse(self, tokens: list[str]) -> Arguments:
        """Read ``tokens``: the command's own keys, config overrides (if it takes them), one positional."""
        arguments = Arguments()
        for token in tokens:
            key, eq, value = token.partition("=")
            if not eq:
                if self.positional is None or arguments.positional is not None:
                    raise ConfigError(f"zoo {self.name} got an unexpected argument '{token}'", f"usage: {self.usage()}")
                if self.choices and token not in self.choices:
                    raise ConfigError(f"unknown {self.positional} '{token}'",
                                      did_you_mean(token, self.choices, f"{self.positional}s"))
                arguments.positional = token
            elif key in self.repeatable:
                arguments.repeated.setdefault(key, []).append(value)
            elif key in self.keys:
                arguments.values[key] = value  # the last one wins, as for config overrides
            elif self.overrides:
                arguments.overrides.append(token)
            else:
                raise ConfigError(f"zoo {self.name} does not take '{key}='",
                                  did_you_mean(key, self.keys, "keys") if self.keys else f"usage: {self.usage()}")
        missing = [key for key in self.required if key not in arguments.values]
        if missing:
            raise ConfigError(f"zoo {self.name} needs {' and '.join(f'{k}=...' for k in missing)}",
                              f"usage: {self.usage()}")
        if self.positional_required and arguments.positional is None:
            raise ConfigError(f"zoo {self.name} needs a {self.positional}", f"usage: {self.usage()}")
        return arguments


def exactly_one(arguments: Arguments, command: str, *keys: str) -> str:
    """The one of ``keys`` that was given; an error if none or several were."""
    given = [key for key in keys if key in arguments.values]
    if len(given) != 1:
        raise ConfigError(f"zoo {command} takes exactly one of {' or '.join(f'{k}=' for k in keys)}",
                          f"e.g. zoo {command} {keys[0]}=...")
    return given[0]
