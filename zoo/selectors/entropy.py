"""entropy: the b points whose predicted class distribution has the highest entropy (uncertainty sampling)."""

from zoo.selectors import SELECTORS, Selector, top
from zoo.selectors.gains import entropy


@SELECTORS.register("entropy")
class Entropy(Selector):
    def choose(self, probs, budget, mistakes, generator):
        return top(entropy(probs), budget)
