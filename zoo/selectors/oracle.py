"""oracle: the upper reference, not a method. It queries the points pure uncertainty sampling would (top-b by
``active.gain``), then drops those the teacher labels wrongly, which only the true labels can tell: what RAD would
reach if it could see the teacher's mistakes. Its dropped points still count as queries."""

from zoo.selectors import SELECTORS, Selector, top
from zoo.selectors.gains import GAINS


@SELECTORS.register("oracle")
class Oracle(Selector):
    def choose(self, probs, budget, mistakes, generator):
        return top(GAINS[self.settings.gain](probs), budget)

    def keep(self, teacher_probs, targets):
        return teacher_probs.argmax(dim=1) == targets
