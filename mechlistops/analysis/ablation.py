"""Ablation: how much each operator's accuracy and loss depend on an MLP layer, an attention
layer or one head.

Context / intuition: replacing a component's output with an uninformative value and watching
the answer degrade measures how much the model relies on that component (the paper's claim 5:
SUM-only models lean on their MLPs, jointly trained models on attention). What counts as
"uninformative" matters, so three modes:
- zero: the output is set to 0 (for a head, its `z`, so the head adds nothing but `b_O`'s share);
- mean: the output is replaced by its mean over every real position of a reference batch (one
  vector per site; it keeps the average offset the rest of the model expects). The reference is
  a separate batch of the training mixture (`common.reference_batch`), none of it among the
  evaluated examples, so the mean carries nothing about the examples it is scored on;
- resample: the output is replaced by the same site's output on another example of the same
  length, at the same position (a random permutation within each length group of a batch; an
  example whose length is unique in its batch keeps its own output).

Sites are hook points: `blocks.{l}.hook_mlp_out`, `blocks.{l}.hook_attn_out`,
`blocks.{l}.attn.hook_z` (head h = index h of the head axis). Hooks are always temporary
(`model.hooks`). Accuracy is read at the last `=` with the answer teacher-forced (for
chain-of-thought runs, the chain too).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mechlistops.analysis.common import position_mask, same_length_permutation
from mechlistops.data import Examples
from mechlistops.errors import ConfigError
from mechlistops.evaluate import batches
from mechlistops.tl import HookedTransformer, HookPoint

COMPONENTS = ("mlp", "attn", "head")
MODES = ("zero", "mean", "resample")


@dataclass(frozen=True)
class Site:
    """One thing to ablate: a component at one layer (or all layers), maybe one head."""

    component: str
    layers: tuple[int, ...]
    head: int | None = None

    @property
    def label(self) -> str:
        where = f"L{self.layers[0]}" if len(self.layers) == 1 else "all layers"
        return f"{self.component} {where}" + (f" H{self.head}" if self.head is not None else "")

    def hook_names(self) -> list[str]:
        name = {"mlp": "hook_mlp_out", "attn": "hook_attn_out", "head": "attn.hook_z"}
        return [f"blocks.{layer}.{name[self.component]}" for layer in self.layers]


def sites_for(
    model: HookedTransformer, component: str, layer: int | None = None, head: int | None = None
) -> list[Site]:
    """Default: each layer in turn, then all together (for heads: every head of each layer)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if component not in COMPONENTS:
        raise ConfigError(f"component must be one of {', '.join(COMPONENTS)}, got {component!r}")
    if layer is not None and not 0 <= layer < n_layers:
        raise ConfigError(f"layer {layer} does not exist (the model has {n_layers} layers)")
    if head is not None and not 0 <= head < n_heads:
        raise ConfigError(f"head {head} does not exist (the model has {n_heads} heads)")
    if head is not None and component != "head":
        raise ConfigError("--head needs --component head")
    layers = [layer] if layer is not None else list(range(n_layers))
    if component == "head":
        heads = [head] if head is not None else list(range(n_heads))
        return [Site("head", (lay,), h) for lay in layers for h in heads]
    sites = [Site(component, (lay,)) for lay in layers]
    if layer is None and n_layers > 1:
        sites.append(Site(component, tuple(range(n_layers))))
    return sites


def _replace_hook(act: torch.Tensor, hook: HookPoint, head: int | None, value) -> torch.Tensor:
    """Write `value` (a function of the activation, or a mean broadcast over batch and
    position) into the site, or into one head's slice of it."""
    new = value(act) if callable(value) else value.expand_as(act)
    if head is None:
        return new.clone()
    act = act.clone()
    act[:, :, head] = new[:, :, head]
    return act


@torch.no_grad()
def site_means(model: HookedTransformer, sets: dict[str, Examples], names: list[str]) -> dict:
    """Mean activation of each hook over every real (non-pad) position of every example."""
    sums, count = {}, 0
    for ex in sets.values():
        for tokens, _, _, lengths in batches(ex, device=model.W_E.device):
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            mask = position_mask(lengths, tokens.shape[1])
            for n in names:
                sums[n] = sums.get(n, 0) + cache[n][mask].sum(0)
            count += int(mask.sum())
    return {n: s / count for n, s in sums.items()}


def ablation_hooks(
    site: Site, mode: str, means: dict | None = None, perm: torch.Tensor | None = None
) -> list:
    """Forward hooks that ablate `site`: (hook name, fn) pairs for `model.hooks`.

    mean mode needs `means` (from `site_means`); resample mode a batch permutation `perm`.
    """
    hooks = []
    for name in site.hook_names():
        if mode == "zero":
            value = lambda act: torch.zeros_like(act)  # noqa: E731
        elif mode == "mean":
            value = means[name]
        else:
            value = lambda act, p=perm: act[p]  # noqa: E731
        hooks.append((name, partial(_replace_hook, head=site.head, value=value)))
    return hooks


@torch.no_grad()
def _score(model, tokens, pos, answers, hooks) -> tuple[np.ndarray, np.ndarray]:
    with model.hooks(fwd_hooks=hooks):
        logits = model(tokens)
    at = logits[torch.arange(len(pos)), pos]
    loss = F.cross_entropy(at, answers, reduction="none")
    return (at.argmax(-1) == answers).cpu().numpy(), loss.cpu().numpy()


def ablate(
    model: HookedTransformer,
    sets: dict[str, Examples],
    sites: list[Site],
    mode: str = "zero",
    seed: int = 0,
    reference: Examples | None = None,
) -> pd.DataFrame:
    """Accuracy and loss per test set and site, clean and ablated. Mean mode averages each
    site over `reference` (a batch apart from `sets`, e.g. `AnalysisInputs.reference`).

    Columns: set, site, mode, n, clean_acc, ablated_acc, delta_acc, clean_loss, ablated_loss,
    delta_loss.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "mean" and reference is None:
        raise ConfigError("mean ablation needs a reference batch to average over")
    device = model.W_E.device
    names = sorted({n for s in sites for n in s.hook_names()})
    means = site_means(model, {"reference": reference}, names) if mode == "mean" else {}
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for set_name, ex in sets.items():
        clean_acc, clean_loss = [], []
        ablated = {s: ([], []) for s in sites}
        for tokens, pos, answers, lengths in batches(ex, device=device):
            acc, loss = _score(model, tokens, pos, answers, [])
            clean_acc.append(acc)
            clean_loss.append(loss)
            perm = same_length_permutation(lengths, gen)
            for site in sites:
                hooks = ablation_hooks(site, mode, means, perm)
                acc, loss = _score(model, tokens, pos, answers, hooks)
                ablated[site][0].append(acc)
                ablated[site][1].append(loss)
        c_acc, c_loss = np.concatenate(clean_acc).mean(), np.concatenate(clean_loss).mean()
        for site in sites:
            a_acc = np.concatenate(ablated[site][0]).mean()
            a_loss = np.concatenate(ablated[site][1]).mean()
            rows.append(
                {
                    "set": set_name,
                    "site": site.label,
                    "mode": mode,
                    "n": len(ex),
                    "clean_acc": c_acc,
                    "ablated_acc": a_acc,
                    "delta_acc": a_acc - c_acc,
                    "clean_loss": c_loss,
                    "ablated_loss": a_loss,
                    "delta_loss": a_loss - c_loss,
                }
            )
    return pd.DataFrame(rows)
