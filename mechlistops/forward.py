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

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

_ACT = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def _norm(module, x: Tensor, kind: str | None, eps: float) -> Tensor:
    if kind == "LN":
        return F.layer_norm(x, (x.shape[-1],), module.w, module.b, eps)
    if kind == "RMS":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * module.w
    return x


def _attention(
    block,
    resid: Float[Tensor, "batch pos d_model"],
    cfg,
    query_pos: Int[Tensor, "batch k"] | None,
) -> Float[Tensor, "batch q_pos d_model"]:
    """Block attention output; at query_pos only when given (keys/values at every position)."""
    attn = block.attn
    x = _norm(block.ln1, resid, cfg.normalization_type, cfg.eps)
    xq = x if query_pos is None else x.gather(1, query_pos[..., None].expand(-1, -1, x.shape[-1]))
    # One matmul per projection on (d_model, head*d_head) views: much faster than per-head bmm.
    n_heads, d_model, d_head = attn.W_Q.shape
    w_q = einops.rearrange(attn.W_Q, "head d_model d_head -> d_model (head d_head)")
    w_kv = einops.rearrange(
        torch.stack([attn.W_K, attn.W_V]), "kv head d_model d_head -> d_model (kv head d_head)"
    )
    b_kv = einops.rearrange(torch.stack([attn.b_K, attn.b_V]), "kv head d_head -> (kv head d_head)")
    q = xq @ w_q + attn.b_Q.reshape(-1)
    kv = x @ w_kv + b_kv
    q = einops.rearrange(q, "batch q (head d_head) -> batch head q d_head", head=n_heads)
    k, v = einops.rearrange(
        kv, "batch k (kv head d_head) -> kv batch head k d_head", kv=2, head=n_heads
    )
    scale = 1.0 / cfg.attn_scale if cfg.use_attn_scale else 1.0
    if query_pos is None:
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        key_pos = torch.arange(x.shape[1], device=x.device)
        mask = key_pos[None, None, None, :] <= query_pos[:, None, :, None]  # (batch, 1, q, k)
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    z = einops.rearrange(z, "batch head q d_head -> batch q (head d_head)")
    w_o = einops.rearrange(attn.W_O, "head d_head d_model -> (head d_head) d_model")
    return z @ w_o + attn.b_O


def _mlp(block, resid: Tensor, cfg) -> Tensor:
    mlp = block.mlp
    x = _norm(block.ln2, resid, cfg.normalization_type, cfg.eps)
    hidden = _ACT[cfg.act_fn](x @ mlp.W_in + mlp.b_in)
    return hidden @ mlp.W_out + mlp.b_out


def fast_logits(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    query_pos: Int[Tensor, "batch k"] | None = None,
) -> Float[Tensor, "batch k d_vocab"]:
    """Logits at `query_pos` (or at every position when None), equal to `model(tokens)` there."""
    cfg = model.cfg
    if not supports_fast_path(model):
        logits = model(tokens)
        if query_pos is None:
            return logits
        return logits.gather(1, query_pos[..., None].expand(-1, -1, logits.shape[-1]))
    T = tokens.shape[1]
    resid = F.embedding(tokens, model.embed.W_E) + model.pos_embed.W_pos[:T]
    n = cfg.n_layers
    for layer, block in enumerate(model.blocks):
        last = layer == n - 1 and query_pos is not None
        attn_out = _attention(block, resid, cfg, query_pos if last else None)
        if last:
            resid = resid.gather(1, query_pos[..., None].expand(-1, -1, resid.shape[-1]))
        resid = resid + attn_out
        resid = resid + _mlp(block, resid, cfg)
    if n == 0 and query_pos is not None:
        resid = resid.gather(1, query_pos[..., None].expand(-1, -1, resid.shape[-1]))
    if cfg.normalization_type is not None:
        resid = _norm(model.ln_final, resid, cfg.normalization_type, cfg.eps)
    return resid @ model.unembed.W_U + model.unembed.b_U


def supports_fast_path(model: HookedTransformer) -> bool:
    cfg = model.cfg
    return (
        cfg.act_fn in _ACT
        and cfg.normalization_type in ("LN", "RMS", None)
        and cfg.positional_embedding_type == "standard"
        and not cfg.attn_only
        and not cfg.gated_mlp
    )
