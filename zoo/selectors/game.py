"""RAD's sampling distribution and its sampler (Baykal et al., "Robust Active Distillation", ICLR 2023).

The game. The learner picks marginals p in [0, 1]^n with sum(p) = b over the n pool points, whose gains g_i > 0
say how much each would teach the student; an adversary then spoils up to m of them (the teacher's mistakes),
taking away their worth p_i g_i. The learner maximises what is left in the worst case:

    max_p  sum_i p_i g_i - max_{|W| <= m} sum_{i in W} p_i g_i .

The closed form below is our derivation of the stated game (the paper's text was not at hand; marked as ours in
the method spec). Writing the top-m sum as min_t (m t + sum_i (p_i g_i - t)_+) turns the objective into

    F(t) = V(t) - m t,   V(t) = max_p sum_i min(p_i g_i, t),

concave in t. For a level t, V is a fractional knapsack: points in decreasing gain each take p_i = min(t / g_i, 1)
until the budget is spent. Where no cap binds, the optimum fills the top k points to p_(i) = v / g_(i) with
v = b / sum_{j<=k} 1/g_(j), worth (k - m) v: among the most informative points the *less* uncertain ones are
drawn more often, since they are likelier to be labelled right. ``solve_game`` maximises F over t exactly
enough (golden-section search; F is piecewise linear and concave), so caps at 1 are handled too (water-filling),
and m = 0 gives back plain top-b sampling.

DEPROUND (the paper's Algorithm 2, dependent rounding) then draws exactly b points with P(i drawn) = p_i: it takes
two fractional entries and moves mass between them, in whichever direction a biased coin says, until one of them
is 0 or 1; each move keeps every marginal's expectation and the sum.
"""

import math

import torch

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
EPS = 1e-9


def fill(gains: torch.Tensor, budget: int, level: float) -> torch.Tensor:
    """The knapsack's marginals at level t for gains sorted in decreasing order."""
    need = torch.clamp(level / gains, max=1.0)
    before = torch.cumsum(need, 0) - need
    return torch.clamp(budget - before, min=0.0).minimum(need)


def solve_game(gains: torch.Tensor, budget: int, mistakes: int, iterations: int = 200) -> torch.Tensor:
    """RAD's marginals p (sum b, each in [0, 1]) for gains ``gains`` (> 0) and m = ``mistakes``; see the module
    docstring. Returns p in the order of ``gains``."""
    g = gains.double().clamp_min(1e-6)  # 1/g must exist: a point the student is sure of still has a tiny gain
    n = len(g)
    if not 0 < budget <= n:
        raise ValueError(f"budget {budget} outside 1..{n}")
    order = torch.sort(g, descending=True, stable=True).indices
    g_sorted = g[order]

    def objective(level: float) -> float:
        return float((fill(g_sorted, budget, level) * g_sorted).sum()) - mistakes * level

    low, high = 0.0, float(g_sorted[0])
    a, b = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
    fa, fb = objective(a), objective(b)
    for _ in range(iterations):
        if fa < fb:
            low, a, fa = a, b, fb
            b = low + GOLDEN * (high - low)
            fb = objective(b)
        else:
            high, b, fb = b, a, fa
            a = high - GOLDEN * (high - low)
            fa = objective(a)
    level = (low + high) / 2.0
    p = torch.zeros(n, dtype=torch.float64)
    p[order] = fill(g_sorted, budget, level)
    return p


def depround(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exactly round(sum p) indices, index i drawn with probability p_i (DEPROUND); sorted."""
    values = p.double().tolist()
    target = round(sum(values))
    fractional = [i for i, v in enumerate(values) if EPS < v < 1.0 - EPS]
    coins = torch.rand(len(fractional), generator=generator, dtype=torch.float64).tolist()
    while len(fractional) > 1:
        i, j = fractional[-1], fractional[-2]
        up, down = min(1.0 - values[i], values[j]), min(values[i], 1.0 - values[j])
        if coins.pop() < down / (up + down):  # i gains `up`, j loses it; else i loses `down` to j
            values[i], values[j] = values[i] + up, values[j] - up
        else:
            values[i], values[j] = values[i] - down, values[j] + down
        for k in (i, j):  # each move makes at least one of the two whole
            if not EPS < values[k] < 1.0 - EPS:
                fractional.remove(k)
    chosen = [i for i, v in enumerate(values) if v > 0.5]  # the last fractional entry, if any, is 0 or 1 up to rounding
    if len(chosen) != target:
        raise ArithmeticError(f"DEPROUND drew {len(chosen)} points for a budget of {target}")
    return torch.tensor(chosen, dtype=torch.long)
