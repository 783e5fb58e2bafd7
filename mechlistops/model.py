"""The one place that builds a HookedTransformer from a mechlistops config.

n_ctx and d_vocab follow from the data config (the longest sequence it can produce, the
vocabulary of its modulus), so they can never disagree with the data. The saved
`hooked_transformer_config` is exactly the dict built here, so a checkpoint loads with nothing
but `HookedTransformer(HookedTransformerConfig(**cfg["hooked_transformer_config"]))` and
`load_state_dict`.

Looped depth: one block's parameters shared by every layer. Each layer keeps its own
TransformerBlock module (so its hook names, `blocks.{l}.hook_resid_post` etc., stay intact) but
its Parameters are block 0's. The state dict still lists every layer; a plain HookedTransformer
loading it gets identical copies and computes the same function.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from mechlistops.config import DataConfig, ModelConfig
from mechlistops.data import seq_len
from mechlistops.errors import ConfigError
from mechlistops.listops import Vocab
from mechlistops.tl import HookedTransformer, HookedTransformerConfig

EMBEDDING_PARAMS = ("embed.W_E", "pos_embed.W_pos", "unembed.W_U", "unembed.b_U")


def hooked_transformer_config_dict(model: ModelConfig, data: DataConfig) -> dict[str, Any]:
    """JSON-ready kwargs for HookedTransformerConfig."""
    return {
        "n_layers": model.n_layers,
        "d_model": model.d_model,
        "n_heads": model.n_heads,
        "d_head": model.d_head_resolved,
        "d_mlp": model.d_mlp_resolved,
        "act_fn": model.act_fn,
        "normalization_type": model.normalization,
        "n_ctx": seq_len(data),
        "d_vocab": len(Vocab.of(data)),
        "d_vocab_out": len(Vocab.of(data)),
        "positional_embedding_type": "standard",
        "default_prepend_bos": False,  # sequences carry their own <bos>
        "original_architecture": "mechlistops",
    }


def make_hooked_transformer(
    ht_cfg: dict[str, Any], seed: int | None = None, device: str | torch.device = "cpu"
) -> HookedTransformer:
    """HookedTransformer from its config dict, initialised from `seed` without touching the
    global RNG."""
    with warnings.catch_warnings():
        # transformer-lens 3.x marks HookedTransformer as deprecated in favour of 4.x's bridge;
        # we pin <4 on purpose, so the warning says nothing actionable here.
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated")
        cfg = HookedTransformerConfig(**ht_cfg, device=str(device))
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return HookedTransformer(cfg, move_to_device=True)


def build_model(
    model: ModelConfig, data: DataConfig, seed: int = 0, device: str | torch.device = "cpu"
) -> HookedTransformer:
    ht = make_hooked_transformer(hooked_transformer_config_dict(model, data), seed, device)
    if model.looped:
        tie_blocks(ht)
    return ht


def tie_blocks(model: HookedTransformer) -> None:
    """Make every block use block 0's Parameters (looped depth)."""
    first = model.blocks[0]
    for block in model.blocks[1:]:
        for module_name, module in block.named_modules():
            source = first.get_submodule(module_name) if module_name else first
            for name, _ in list(module.named_parameters(recurse=False)):
                setattr(module, name, getattr(source, name))


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Unique trainable parameters (shared ones once), and the count without embeddings
    (token and positional embeddings, unembedding)."""
    seen, total, embed = set(), 0, 0
    embed_ids = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if name in EMBEDDING_PARAMS:
            embed_ids.add(id(p))
    for p in model.parameters():  # parameters() yields each shared Parameter once
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if id(p) in embed_ids:
            embed += p.numel()
    return {"n_params": total, "n_params_no_embed": total - embed}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is available")
    return dev


def to_device(values, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host array or list as a tensor on `device`. To a GPU it goes through pinned memory
    without waiting: a plain copy from the host waits for every kernel queued before it, which
    would make the training loop wait for the device at every step."""
    if torch.device(device).type != "cuda":
        return torch.as_tensor(values, dtype=dtype, device=device)
    return torch.as_tensor(values, dtype=dtype).pin_memory().to(device, non_blocking=True)
