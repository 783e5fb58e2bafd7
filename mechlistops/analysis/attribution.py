"""Attention vs MLP: how much each sublayer writes, and what it writes towards the answer.

Context / intuition:
- Usage ratio (the paper's "attention output/input ratio"): for layer l, ||attn_out|| /
  ||resid_pre|| and ||mlp_out|| / ||resid_mid||, the size of what a sublayer adds relative to
  the residual stream it reads. Averaged per example at the answer position (the last `=`) and
  over all real positions, per test set.
- Direct logit attribution (DLA): the final residual at the answer position is a sum of
  component outputs (embeddings, each head, each attention bias, each MLP). Through the final
  LayerNorm, with its scale frozen at the value of the clean run (the usual convention, since the
  scale is not linear), each component's direct effect on the correct answer's logit is
  (centered component / scale) @ W_U[:, answer]. The LayerNorm bias and b_U form one more term,
  `bias`, and the terms sum exactly to the logit (tests check it). The same is given for the
  logit difference between the answer and the runner-up (the highest-scoring wrong value).
  DLA measures only direct paths: a component that matters through later layers scores ~0.
"""

from __future__ import annotations

import einops
import pandas as pd
import torch

from mechlistops.analysis.common import position_mask, same_length_permutation
from mechlistops.data import Examples
from mechlistops.evaluate import batches
from mechlistops.tl import HookedTransformer, patching


def runner_up(final: torch.Tensor, answers: torch.Tensor, modulus: int) -> torch.Tensor:
    """The highest-scoring wrong value token of each example, from its (batch, vocab) logits at
    the answer position: the other side of every logit difference here."""
    wrong = final[:, :modulus].detach().clone()
    wrong[torch.arange(len(answers), device=answers.device), answers] = -torch.inf
    return wrong.argmax(-1)


def _resid_names(n_layers: int) -> list[str]:
    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale"]
    for layer in range(n_layers):
        names += [
            f"blocks.{layer}.{n}"
            for n in (
                "hook_resid_pre",
                "hook_resid_mid",
                "hook_attn_out",
                "hook_mlp_out",
                "attn.hook_z",
            )
        ]
    return names


@torch.no_grad()
def usage_ratios(model: HookedTransformer, sets: dict[str, Examples]) -> pd.DataFrame:
    """Columns: set, layer, sublayer (attn|mlp), where (answer|all), ratio (mean over examples
    of the per-example ratio; for `all`, over every real position)."""
    rows = []
    n_layers = model.cfg.n_layers
    for set_name, ex in sets.items():
        acc: dict[tuple, list] = {}
        for tokens, pos, _, lengths in batches(ex, device=model.W_E.device):
            _, cache = model.run_with_cache(
                tokens, names_filter=lambda n: "resid" in n or "_out" in n
            )
            mask = position_mask(lengths, tokens.shape[1])
            rows_idx = torch.arange(len(pos), device=pos.device)
            for layer in range(n_layers):
                b = f"blocks.{layer}."
                for sub, out, inp in (
                    ("attn", "hook_attn_out", "hook_resid_pre"),
                    ("mlp", "hook_mlp_out", "hook_resid_mid"),
                ):
                    ratio = cache[b + out].norm(dim=-1) / cache[b + inp].norm(dim=-1)
                    acc.setdefault((layer, sub, "answer"), []).append(ratio[rows_idx, pos])
                    acc.setdefault((layer, sub, "all"), []).append(ratio[mask])
        for (layer, sub, where), parts in acc.items():
            rows.append(
                {
                    "set": set_name,
                    "layer": layer,
                    "sublayer": sub,
                    "where": where,
                    "ratio": float(torch.cat(parts).mean()),
                }
            )
    return pd.DataFrame(rows)


def _components(model, cache, rows, pos) -> tuple[list[str], torch.Tensor]:
    """Residual-stream pieces at the answer position: names and (component, batch, d_model)."""
    names, parts = ["embed"], [cache["hook_embed"][rows, pos] + cache["hook_pos_embed"][rows, pos]]
    for layer, block in enumerate(model.blocks):
        z = cache[f"blocks.{layer}.attn.hook_z"][rows, pos]  # (batch, head, d_head)
        per_head = einops.einsum(z, block.attn.W_O, "b h e, h e d -> h b d")
        for h in range(model.cfg.n_heads):
            names.append(f"L{layer} H{h}")
            parts.append(per_head[h])
        names.append(f"L{layer} attn b_O")
        parts.append(block.attn.b_O.expand_as(parts[0]))
        names.append(f"L{layer} mlp")
        parts.append(cache[f"blocks.{layer}.hook_mlp_out"][rows, pos])
    return names, torch.stack(parts)


@torch.no_grad()
def direct_logit_attribution(
    model: HookedTransformer, sets: dict[str, Examples], modulus: int
) -> pd.DataFrame:
    """Columns: set, component, logit (mean direct effect on the answer's logit), logit_diff
    (on answer minus runner-up, the best wrong value token). Components: embed (token and
    position), each head, each layer's attention bias, each MLP, and `bias` (final LayerNorm bias
    and b_U); per example they sum to the answer's logit."""
    norm = model.cfg.normalization_type
    d_model = model.cfg.d_model
    ones, zeros = torch.ones(d_model), torch.zeros(d_model)
    ln_w = model.ln_final.w if norm in ("LN", "RMS") else ones.to(model.W_E.device)
    ln_b = model.ln_final.b if norm == "LN" else zeros.to(model.W_E.device)
    needed = set(_resid_names(model.cfg.n_layers))
    rows = []
    for set_name, ex in sets.items():
        sums, count, names = 0, 0, []
        for tokens, pos, answers, _ in batches(ex, device=model.W_E.device):
            logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in needed)
            r = torch.arange(len(pos), device=pos.device)
            names, comps = _components(model, cache, r, pos)  # (component, batch, d_model)
            if norm == "LN":  # centering is linear: apply it to each component
                comps = comps - comps.mean(-1, keepdim=True)
            if norm in ("LN", "RMS"):
                comps = comps / cache["ln_final.hook_scale"][r, pos][None]  # frozen scale
            runner = runner_up(logits[r, pos], answers, modulus)
            u_ans, u_run = model.W_U[:, answers].T, model.W_U[:, runner].T  # (batch, d_model)
            terms = torch.cat(
                [
                    (comps * ln_w * u_ans).sum(-1),
                    (u_ans @ ln_b + model.b_U[answers])[None],
                ]
            )  # (component + 1, batch)
            diffs = torch.cat(
                [
                    (comps * ln_w * (u_ans - u_run)).sum(-1),
                    ((u_ans - u_run) @ ln_b + model.b_U[answers] - model.b_U[runner])[None],
                ]
            )
            sums = sums + torch.stack([terms.sum(1), diffs.sum(1)], 1)
            count += len(r)
        for name, (logit, diff) in zip(names + ["bias"], (sums / count).cpu().numpy()):
            rows.append(
                {
                    "set": set_name,
                    "component": name,
                    "logit": float(logit),
                    "logit_diff": float(diff),
                }
            )
    return pd.DataFrame(rows)


def attribution_patching(
    model: HookedTransformer,
    sets: dict[str, Examples],
    modulus: int,
    seed: int = 0,
    batch_size: int = 250,
) -> pd.DataFrame:
    """Attribution patching scores of every head and MLP layer (Nanda's linear approximation
    of activation patching).

    Metric: the clean logit difference between the answer and the runner-up (both fixed from
    the clean run). Corruption: each example's activations are replaced by those of another
    example of the same length (so positions align; since corruptions are other clean
    examples, one forward and backward pass gives both). Score of a site: (corrupted - clean)
    activation . d metric / d activation, summed over positions and the site's dimensions, mean
    over examples: the estimated change of the metric when that site is patched. Exact when
    the metric is linear in the site (tests check that case); an approximation otherwise.

    Columns: set, site, score, clean_metric.
    """
    names = [
        f"blocks.{layer}.{n}"
        for layer in range(model.cfg.n_layers)
        for n in ("attn.hook_z", "hook_mlp_out")
    ]
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for set_name, ex in sets.items():
        totals: dict[str, torch.Tensor] = {}
        metric_sum, count = 0.0, 0
        # A backward pass keeps the whole forward graph: smaller batches bound its memory.
        for tokens, pos, answers, lengths in batches(ex, batch_size, device=model.W_E.device):
            acts: dict[str, torch.Tensor] = {}

            def keep(act, hook, acts=acts):
                act.retain_grad()
                acts[hook.name] = act
                return act

            model.zero_grad(set_to_none=True)
            with model.hooks(fwd_hooks=[(n, keep) for n in names]):
                logits = model(tokens)
            r = torch.arange(len(pos), device=pos.device)
            final = logits[r, pos]
            runner = runner_up(final, answers, modulus)
            metric = final[r, answers] - final[r, runner]  # (batch,)
            metric.sum().backward()
            perm = same_length_permutation(lengths, gen)
            mask = position_mask(lengths, tokens.shape[1])[..., None]  # (batch, pos, 1)
            for name, act in acts.items():
                delta = (act[perm] - act).detach() * act.grad  # (batch, pos, [head,] d)
                if delta.dim() == 4:  # z: keep the head axis
                    per = (delta * mask[..., None]).sum(dim=(1, 3))  # (batch, head)
                else:
                    per = (delta * mask).sum(dim=(1, 2))[:, None]  # (batch, 1)
                totals[name] = totals.get(name, 0) + per.sum(0)
            metric_sum += float(metric.detach().sum())
            count += len(pos)
        model.zero_grad(set_to_none=True)
        for name, total in totals.items():
            layer = name.split(".")[1]
            labels = (
                [f"L{layer} H{h}" for h in range(len(total))]
                if "hook_z" in name
                else [f"L{layer} mlp"]
            )
            for label, value in zip(labels, (total / count).tolist()):
                rows.append(
                    {
                        "set": set_name,
                        "site": label,
                        "score": value,
                        "clean_metric": metric_sum / count,
                    }
                )
    return pd.DataFrame(rows)


@torch.no_grad()
def activation_patching(
    model: HookedTransformer,
    sets: dict[str, Examples],
    modulus: int,
    seed: int = 0,
    batch_size: int = 250,
) -> pd.DataFrame:
    """Exact activation patching of the sites `attribution_patching` scores, the quantity it
    estimates: the same metric, the same corruptions (same seed and batch size give the same
    same-length permutations), one patched forward pass per site, through
    `transformer_lens.patching`. Noising: the clean input runs with one site's activation, at
    every position, taken from the corrupted run; the effect is the patched metric minus the
    clean one. Columns: set, site, effect."""
    gen = torch.Generator().manual_seed(seed)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    rows = []
    for set_name, ex in sets.items():
        heads_total = torch.zeros(n_layers, n_heads)
        mlp_total = torch.zeros(n_layers)
        count = 0
        for tokens, pos, answers, lengths in batches(ex, batch_size, device=model.W_E.device):
            r = torch.arange(len(pos), device=pos.device)
            logits = model(tokens)
            runner = runner_up(logits[r, pos], answers, modulus)
            clean = (logits[r, pos, answers] - logits[r, pos, runner]).sum()

            def metric(patched, r=r, pos=pos, answers=answers, runner=runner, clean=clean):
                return (patched[r, pos, answers] - patched[r, pos, runner]).sum() - clean

            perm = same_length_permutation(lengths, gen)
            _, corrupted = model.run_with_cache(tokens[perm])
            # patching.* run their first argument with activations from the cache: giving it
            # the clean tokens and the corrupted cache makes it noising
            heads_total += patching.get_act_patch_attn_head_out_all_pos(
                model, tokens, corrupted, metric
            ).cpu()
            mlp_total += patching.generic_activation_patch(
                model,
                tokens,
                corrupted,
                metric,
                patch_setter=_whole_activation,
                activation_name="mlp_out",
                index_axis_names=("layer",),
            ).cpu()
            count += len(pos)
        for layer in range(n_layers):
            for h in range(n_heads):
                effect = float(heads_total[layer, h]) / count
                rows.append({"set": set_name, "site": f"L{layer} H{h}", "effect": effect})
            effect = float(mlp_total[layer]) / count
            rows.append({"set": set_name, "site": f"L{layer} mlp", "effect": effect})
    return pd.DataFrame(rows)


def _whole_activation(corrupted_activation, index, clean_activation):
    """A patch setter of transformer_lens.patching that replaces the whole activation."""
    return clean_activation
