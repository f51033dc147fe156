"""rad: Robust Active Distillation's selector (Baykal et al., ICLR 2023; spec methods/robust_active_distillation.md).

Gains g_i from the current student (``active.gain``: margin by default, the spec's reading; entropy as the
switch), the max-min game's marginals p against m teacher mistakes (``zoo.selectors.game.solve_game``), then
exactly b points drawn by DEPROUND with P(i) = p_i.
"""

from zoo.selectors import SELECTORS, Selector
from zoo.selectors.gains import GAINS
from zoo.selectors.game import depround, solve_game


@SELECTORS.register("rad")
class RobustActiveDistillation(Selector):
    def choose(self, probs, budget, mistakes, generator):
        gains = GAINS[self.settings.gain](probs)
        return depround(solve_game(gains, budget, mistakes), generator)
