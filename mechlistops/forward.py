"""A plain-torch forward pass over a HookedTransformer's own Parameters, for training speed.

Context: HookedTransformer's forward is built for inspection (a HookPoint on every activation,
general attention code); training needs none of that. This module computes the same function
from the same Parameters (`model.blocks[l].attn.W_Q`, ...), so gradients land on the
HookedTransformer and every checkpoint stays a plain HookedTransformer state dict.

The main saving: when only a few positions are scored (the answer after `=`), the last block
needs its queries, attention output and MLP at those positions only; keys and values still come
from every position. Loss and gradients are exact. Tests hold the logits against
`model(tokens)`.
"""

from __future__ import annotations

from collections.abc import Mapping

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from mechlistops.tl import HookedTransformer

_ACT = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


Params = Mapping[str, Tensor]  # HookedTransformer parameter names -> tensors


def model_params(model: HookedTransformer) -> dict[str, Tensor]:
    """Every parameter under its state-dict name (shared looped blocks under each name)."""
    return dict(model.named_parameters(remove_duplicate=False))


def _norm(p: Params, prefix: str, x: Tensor, kind: str | None, eps: float) -> Tensor:
    if kind == "LN":
        return F.layer_norm(x, (x.shape[-1],), p[f"{prefix}.w"], p[f"{prefix}.b"], eps)
    if kind == "RMS":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * p[f"{prefix}.w"]
    return x


def _attention(
    p: Params,
    layer: int,
    resid: Float[Tensor, "batch pos d_model"],
    cfg,
    query_pos: Int[Tensor, "batch k"] | None,
    fused: bool = True,
) -> Float[Tensor, "batch q_pos d_model"]:
    """Block attention output; at query_pos only when given (keys/values at every position).
    fused: torch's scaled_dot_product_attention, else the same in plain ops."""
    a = f"blocks.{layer}.attn"
    x = _norm(p, f"blocks.{layer}.ln1", resid, cfg.normalization_type, cfg.eps)
    xq = x if query_pos is None else x.gather(1, query_pos[..., None].expand(-1, -1, x.shape[-1]))
    # One matmul per projection on (d_model, head*d_head) views: much faster than per-head bmm.
    n_heads = cfg.n_heads
    w_q = einops.rearrange(p[f"{a}.W_Q"], "head d_model d_head -> d_model (head d_head)")
    w_kv = einops.rearrange(
        torch.stack([p[f"{a}.W_K"], p[f"{a}.W_V"]]),
        "kv head d_model d_head -> d_model (kv head d_head)",
    )
    b_kv = einops.rearrange(
        torch.stack([p[f"{a}.b_K"], p[f"{a}.b_V"]]), "kv head d_head -> (kv head d_head)"
    )
    q = xq @ w_q + p[f"{a}.b_Q"].reshape(-1)
    kv = x @ w_kv + b_kv
    q = einops.rearrange(q, "batch q (head d_head) -> batch head q d_head", head=n_heads)
    k, v = einops.rearrange(
        kv, "batch k (kv head d_head) -> kv batch head k d_head", kv=2, head=n_heads
    )
    scale = 1.0 / cfg.attn_scale if cfg.use_attn_scale else 1.0
    key_pos = torch.arange(x.shape[1], device=x.device)
    if query_pos is None:
        mask = None if fused else key_pos[None, None, None, :] <= key_pos[None, None, :, None]
    else:
        mask = key_pos[None, None, None, :] <= query_pos[:, None, :, None]  # (batch, 1, q, k)
    if not fused:  # plain ops: vmap batches them (it has no rule for the fused CPU kernel)
        scores = (q @ k.transpose(-1, -2)) * scale
        z = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    elif query_pos is None:
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    z = einops.rearrange(z, "batch head q d_head -> batch q (head d_head)")
    w_o = einops.rearrange(p[f"{a}.W_O"], "head d_head d_model -> (head d_head) d_model")
    return z @ w_o + p[f"{a}.b_O"]


def _mlp(p: Params, layer: int, resid: Tensor, cfg) -> Tensor:
    m = f"blocks.{layer}.mlp"
    x = _norm(p, f"blocks.{layer}.ln2", resid, cfg.normalization_type, cfg.eps)
    hidden = _ACT[cfg.act_fn](x @ p[f"{m}.W_in"] + p[f"{m}.b_in"])
    return hidden @ p[f"{m}.W_out"] + p[f"{m}.b_out"]


def fast_logits(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    query_pos: Int[Tensor, "batch k"] | None = None,
) -> Float[Tensor, "batch k d_vocab"]:
    """Logits at `query_pos` (or at every position when None), equal to `model(tokens)` there."""
    if not supports_fast_path(model):
        logits = model(tokens)
        if query_pos is None:
            return logits
        return logits.gather(1, query_pos[..., None].expand(-1, -1, logits.shape[-1]))
    return logits_from_params(model_params(model), model.cfg, tokens, query_pos)


def logits_from_params(
    p: Params,
    cfg,
    tokens: Int[Tensor, "batch pos"],
    query_pos: Int[Tensor, "batch k"] | None = None,
    fused_attention: bool = True,
) -> Float[Tensor, "batch k d_vocab"]:
    """The forward pass of `fast_logits` as a pure function of the parameters (so it can be
    vmapped over an ensemble's stacked parameters; see `mechlistops.ensemble`, which passes
    fused_attention=False: vmap has no batching rule for the fused attention kernel on CPU
    and would loop over the members)."""
    T = tokens.shape[1]
    resid = F.embedding(tokens, p["embed.W_E"]) + p["pos_embed.W_pos"][:T]
    n = cfg.n_layers
    for layer in range(n):
        last = layer == n - 1 and query_pos is not None
        attn_out = _attention(p, layer, resid, cfg, query_pos if last else None, fused_attention)
        if last:
            resid = resid.gather(1, query_pos[..., None].expand(-1, -1, resid.shape[-1]))
        resid = resid + attn_out
        resid = resid + _mlp(p, layer, resid, cfg)
    if n == 0 and query_pos is not None:
        resid = resid.gather(1, query_pos[..., None].expand(-1, -1, resid.shape[-1]))
    if cfg.normalization_type is not None:
        resid = _norm(p, "ln_final", resid, cfg.normalization_type, cfg.eps)
    return resid @ p["unembed.W_U"] + p["unembed.b_U"]


def supports_fast_path(model: HookedTransformer) -> bool:
    cfg = model.cfg
    return (
        cfg.act_fn in _ACT
        and cfg.normalization_type in ("LN", "RMS", None)
        and cfg.positional_embedding_type == "standard"
        and not cfg.attn_only
        and not cfg.gated_mlp
    )
