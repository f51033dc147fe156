"""margin: the b points with the smallest top-1 minus top-2 probability margin (pure uncertainty sampling).

The points the student is least sure of are also where the teacher errs most often: this is the selector RAD is
built to beat.
"""

from zoo.selectors import SELECTORS, Selector, top
from zoo.selectors.gains import margin


@SELECTORS.register("margin")
class Margin(Selector):
    def choose(self, probs, budget, mistakes, generator):
        return top(margin(probs), budget)
