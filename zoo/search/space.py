"""Search spaces as data: a family of CIFAR ResNets given by the choices of each stage's depth and width
(``tasks/space/<name>.yaml``), each candidate an arch name (``cifar_resnet.d<a>-<b>-<c>[.w<x>-<y>-<z>]``, the
family ``zoo.archs.cifar_resnet`` registers), with its parameters and FLOPs, and the budget that filters them.
"""

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.errors import ConfigError

DEFAULT_WIDTHS = (16, 32, 64)


@dataclass(frozen=True)
class Genes:
    depths: tuple[int, ...]
    widths: tuple[int, ...]

    @property
    def name(self) -> str:
        """The candidate's arch name."""
        name = "cifar_resnet.d" + "-".join(map(str, self.depths))
        return name if self.widths == DEFAULT_WIDTHS else name + ".w" + "-".join(map(str, self.widths))


@dataclass(frozen=True)
class Candidate:
    genes: Genes
    params: int
    flops: int | None

    @property
    def name(self) -> str:
        return self.genes.name

    @property
    def mflops(self) -> float:
        return (self.flops or 0) / 1e6


@dataclass(frozen=True)
class Space:
    name: str
    depths: tuple[tuple[int, ...], ...]   # per stage, the choices
    widths: tuple[tuple[int, ...], ...]

    @classmethod
    def from_config(cls, cfg: Any) -> "Space":
        depths = tuple(tuple(int(d) for d in stage) for stage in cfg.depths)
        widths = tuple(tuple(int(w) for w in stage) for stage in cfg.widths)
        if cfg.family != "cifar_resnet" or len(depths) != 3 or len(widths) != 3 or not all(depths) \
                or not all(widths):
            raise ConfigError(f"search space '{cfg.name}' must be a cifar_resnet family with choices for 3 stages",
                              "give depths and widths as three non-empty lists each")
        return cls(str(cfg.name), depths, widths)

    def all_genes(self) -> list[Genes]:
        return [Genes(tuple(d), tuple(w)) for d in itertools.product(*self.depths)
                for w in itertools.product(*self.widths)]

    def mutate(self, genes: Genes, rng: np.random.Generator) -> Genes:
        """One stage's depth or width changed to another of its choices (regularised evolution's mutation)."""
        options = [("depths", i) for i, choices in enumerate(self.depths) if len(choices) > 1] + \
                  [("widths", i) for i, choices in enumerate(self.widths) if len(choices) > 1]
        field, stage = options[rng.integers(len(options))]
        current = list(getattr(genes, field))
        choices = [c for c in getattr(self, field)[stage] if c != current[stage]]
        current[stage] = choices[rng.integers(len(choices))]
        return Genes(**{**genes.__dict__, field: tuple(current)})


def measure(space: Space, num_classes: int, input_shape: tuple[int, ...]) -> list[Candidate]:
    """Every candidate of the space with its parameters and FLOPs per sample."""
    from zoo.archs import count_flops, count_params, create

    found = []
    for genes in space.all_genes():
        model = create(genes.name, num_classes, input_shape)
        found.append(Candidate(genes, count_params(model), count_flops(model, input_shape)))
    return found


def within_budget(candidates: list[Candidate], mflops: float | None, params: int | None) -> list[Candidate]:
    kept = [c for c in candidates if (mflops is None or c.mflops <= mflops) and (params is None or c.params <= params)]
    if not kept:
        smallest = min(candidates, key=lambda c: (c.mflops, c.params))
        raise ConfigError(f"no candidate of the space fits the budget (mflops={mflops}, params={params})",
                          f"the smallest is {smallest.name}: {smallest.mflops:.3g} MFLOPs, {smallest.params:,} "
                          "parameters")
    return kept
