"""uniform: b pool points drawn uniformly without replacement, the reference every selector must beat."""

import torch

from zoo.selectors import SELECTORS, Selector


@SELECTORS.register("uniform")
class Uniform(Selector):
    def choose(self, probs, budget, mistakes, generator):
        return torch.randperm(len(probs), generator=generator)[:budget]
