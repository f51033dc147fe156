"""Sparse mixture-of-experts FFNs, upcycled from a dense decoder (LLaVA-MoD / MoE-LLaVA, on DeepSpeed-MoE's TopKGate).

``upcycle(model, ...)`` replaces the FFN of every ``every``-th decoder layer, from layer ``first`` (LLaVA-MoD's
``moe_mode sparse``: layers 0, 2, 4, ...), by a ``SparseMoE`` whose E experts are exact copies of that FFN and whose
router W_g ∈ R^{d×E} (no bias, ``wg``) is new. For the T tokens of a batch (padding included, as DeepSpeed routes
every position it is given):

    g = softmax(x W_g)                                        router probabilities, [T, E]
    choice 1 = argmax g;  choice j = argmax(x W_g + noise) over the experts not chosen yet
    capacity C = max(min_capacity, ceil(k · T / E · capacity_factor))   (eval: eval_capacity_factor)
    a token's choice j is kept if fewer than C earlier (choice 1 before choice 2, then by position) sent to that expert
    y = Σ_kept g_j / Σ_kept g · expert_j(x)   (top-1: y = g_1 · expert_1(x), DeepSpeed's top1gating)
    a token no expert kept gets 0 (the residual carries it)
    l_aux = E · Σ_e mean_t(g_e) · mean_t(choice 1 = e)         load balancing, before capacity (DeepSpeed's top2gating)

With top-k >= 2, all experts equal and a token kept by at least one expert, y equals the dense FFN's output: the
combine weights of the kept choices sum to 1 (LLaVA-MoD's top-2 upcycling preserves the function). Top-1 scales by
g_1, so it does not (its router would get no gradient from the output otherwise). The noise is DeepSpeed's training
behaviour for the second choice (Gumbel samples added to the logits, training only; ``second_choice_noise``).
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError


class SparseMoE(nn.Module):
    def __init__(self, dense: nn.Module, width: int, num_experts: int, top_k: int, capacity_factor: float,
                 eval_capacity_factor: float, min_capacity: int, second_choice_noise: bool):
        super().__init__()
        self.num_experts, self.top_k = int(num_experts), int(top_k)
        self.capacity_factor, self.eval_capacity_factor = float(capacity_factor), float(eval_capacity_factor)
        self.min_capacity, self.second_choice_noise = int(min_capacity), bool(second_choice_noise)
        self.wg = nn.Linear(width, self.num_experts, bias=False)
        self.experts = nn.ModuleList(copy.deepcopy(dense) for _ in range(self.num_experts))
        self.last_aux: torch.Tensor | None = None  # l_aux of the last forward
        self.last_dropped = 0.0  # the share of (token, choice) routes the last forward dropped for capacity

    def capacity(self, tokens: int) -> int:
        factor = self.capacity_factor if self.training else self.eval_capacity_factor
        return max(self.min_capacity, math.ceil(self.top_k * tokens / self.num_experts * factor))

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(expert index [T, k], combine weight [T, k] (0 where dropped), l_aux) of tokens ``x`` [T, d]."""
        logits = self.wg(x).float()
        gates = F.softmax(logits, dim=-1)
        chosen, masks = [], []
        pick_from = logits
        for j in range(self.top_k):
            if j > 0 and self.training and self.second_choice_noise:
                noise = -torch.empty_like(logits).exponential_().log()  # Gumbel(0, 1)
                pick_from = logits + noise
            for earlier in chosen:
                pick_from = pick_from.scatter(1, earlier[:, None], float("-inf"))
            index = pick_from.argmax(dim=-1)
            chosen.append(index)
            masks.append(F.one_hot(index, self.num_experts))
        aux = self.num_experts * (gates.mean(0) * masks[0].float().mean(0)).sum()
        capacity, taken = self.capacity(len(x)), torch.zeros(self.num_experts, dtype=torch.long, device=x.device)
        weights = []
        for index, mask in zip(chosen, masks, strict=True):
            position = (mask.cumsum(0) - 1 + taken)[torch.arange(len(x), device=x.device), index]
            kept = position < capacity
            taken = taken + mask.sum(0)
            weights.append(gates.gather(1, index[:, None]).squeeze(1) * kept)
        weights = torch.stack(weights, dim=1)
        self.last_dropped = float((weights == 0).float().mean())
        if self.top_k > 1:  # top-1 keeps g_1 as it is, so that the router learns from the output (Switch, DeepSpeed)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weights.dtype).eps)
        return torch.stack(chosen, dim=1), weights, aux

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape
        x = hidden.reshape(-1, shape[-1])
        index, weights, self.last_aux = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = ((index == e) & (weights > 0)).nonzero(as_tuple=True)
            if len(token):
                out.index_add_(0, token, expert(x[token]) * weights[token, slot, None].to(x.dtype))
        return out.reshape(shape)


    def never_drops(self) -> bool:
        """Whether capacity can never drop a route in eval mode: C >= T for every batch of T tokens, which holds when
        k · eval_capacity_factor >= E (each token sends at most one route to an expert). Then a token's output
        depends on that token alone, not on the batch it came in."""
        return self.top_k * self.eval_capacity_factor >= self.num_experts

    def forward_every_expert(self, hidden: torch.Tensor) -> torch.Tensor:
        """``forward`` in eval mode when capacity never binds (``never_drops``), in ops of fixed shape: every expert
        runs on every token and is weighted by the token's combine weight for it, 0 where the expert was not
        chosen. The same routing (iterated argmax, as ``route``) and the same sum, in expert order; what an ONNX
        graph can hold, where ``forward``'s gathers of the routed tokens have data-dependent shapes."""
        shape = hidden.shape
        x = hidden.reshape(-1, shape[-1])
        logits = self.wg(x).float()
        gates = F.softmax(logits, dim=-1)
        experts = torch.arange(self.num_experts, device=x.device)
        combine, pick_from = torch.zeros_like(gates), logits
        for _ in range(self.top_k):
            chosen = experts[None, :] == pick_from.argmax(dim=-1, keepdim=True)  # [T, E], one True per row
            combine = combine + gates * chosen
            pick_from = pick_from.masked_fill(chosen, float("-inf"))
        if self.top_k > 1:
            combine = combine / combine.sum(dim=1, keepdim=True).clamp_min(torch.finfo(combine.dtype).eps)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + expert(x) * combine[:, e, None].to(x.dtype)
        return out.reshape(shape)


def moe_layers(model: nn.Module) -> list[SparseMoE]:
    return [m for m in model.modules() if isinstance(m, SparseMoE)]


def moe_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Σ l_aux over the model's MoE layers at its last forward; None for a dense model."""
    losses = [m.last_aux for m in moe_layers(model) if m.last_aux is not None]
    return torch.stack(losses).sum() if losses else None


UPCYCLE_SETTINGS = ("num_experts", "top_k", "every", "first", "capacity_factor", "eval_capacity_factor",
                    "min_capacity", "second_choice_noise")


def check_upcycle(settings: dict) -> None:
    """One line for settings ``upcycle`` cannot take, before any training (a staged run checks its stages first)."""
    unknown = sorted(set(settings) - set(UPCYCLE_SETTINGS))
    if unknown:
        raise ConfigError(f"upcycle: unknown setting(s) {', '.join(unknown)}",
                          f"settings: {', '.join(UPCYCLE_SETTINGS)}")
    experts, top_k = int(settings.get("num_experts", 4)), int(settings.get("top_k", 2))
    if experts < 1 or top_k < 1 or top_k > experts:
        raise ConfigError(f"upcycle: top_k={top_k} with {experts} experts", "top_k is between 1 and num_experts")
    if int(settings.get("every", 2)) < 1 or int(settings.get("first", 0)) < 0:
        raise ConfigError(f"upcycle: every={settings.get('every')}, first={settings.get('first')}",
                          "every >= 1 and first >= 0")
    if min(float(settings.get("capacity_factor", 1.5)), float(settings.get("eval_capacity_factor", 2.0))) <= 0:
        raise ConfigError("upcycle: capacity factors must be above 0")


def upcycle(model: nn.Module, num_experts: int = 4, top_k: int = 2, every: int = 2, first: int = 0,
            capacity_factor: float = 1.5, eval_capacity_factor: float = 2.0, min_capacity: int = 4,
            second_choice_noise: bool = True) -> nn.Module:
    """``model`` (a ``VisionLanguageModel``) with the FFNs of layers first, first + every, ... turned into experts, in
    place (see the module docstring); the router is new (the caller seeds it)."""
    check_upcycle({"num_experts": num_experts, "top_k": top_k, "every": every, "first": first,
                   "capacity_factor": capacity_factor, "eval_capacity_factor": eval_capacity_factor})
    if moe_layers(model):
        raise ConfigError("upcycle: the student is already a mixture of experts", "upcycle a dense student once")
    layers = model.decoder_layers()
    chosen = range(int(first), len(layers), int(every))
    if not chosen:
        raise ConfigError(f"upcycle: first={first} is past the decoder's {len(layers)} layers")
    width = int(model.lm.config.hidden_size)
    for i in chosen:
        layers[i].mlp = SparseMoE(layers[i].mlp, width, num_experts, top_k, capacity_factor, eval_capacity_factor,
                                  min_capacity, second_choice_noise)
    return model
