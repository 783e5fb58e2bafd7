"""Every TransformerLens name mechlistops uses, imported here and only here.

TransformerLens 4.0 removed `HookedTransformer` in favour of `TransformerBridge`; keeping the
imports in one module means a move to 4.x (or a shim for it) touches this file alone.

TransformerLens imports Hugging Face `datasets` (and with it pyarrow, a 55 MB wheel) at import
time, for dataset helpers mechlistops never calls. Where `datasets` cannot be imported (the
GPU machine, which has no network and installs from a small wheel folder:
benchmarks/fetch_wheels.py), TransformerLens is given a stand-in `datasets` whose every use
raises; the models themselves are TransformerLens's own.
"""

import sys
import types


def _datasets_stand_in() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        pass
    else:
        return

    def missing(*args, **kwargs):
        raise ImportError("Hugging Face `datasets` is not installed (mechlistops does not use it)")

    class Unavailable:
        def __init__(self, *args, **kwargs):
            missing()

    parts = {
        "datasets": {"load_dataset": missing, "Dataset": Unavailable},
        "datasets.arrow_dataset": {"Dataset": Unavailable},
        "datasets.iterable_dataset": {"IterableDataset": Unavailable},
        "datasets.load": {"load_dataset": missing},
    }
    for name, attrs in parts.items():
        module = types.ModuleType(name, "stand-in: Hugging Face datasets is not installed")
        module.__dict__.update(attrs)
        sys.modules[name] = module


_datasets_stand_in()

import json  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

TL_MAJOR = int(metadata.version("transformer-lens").split(".")[0])
if TL_MAJOR < 4:
    from transformer_lens import HookedTransformer, HookedTransformerConfig, patching
    from transformer_lens.hook_points import HookPoint
else:  # an environment with TransformerLens 4.x: only `boot_tl4` (opening exports) works here
    HookedTransformer = HookedTransformerConfig = HookPoint = patching = None

__all__ = [
    "HookedTransformer",
    "HookedTransformerConfig",
    "HookPoint",
    "patching",
    "bridge_config",
    "boot_tl4",
]

# ----------------------------------------------------------------------------- TransformerLens 4.x
# A run exported for TransformerLens 4.x (`mechlistops export`, written by mechlistops/export.py)
# is a folder of three files: the bridge config with what the export came from, the weights in
# HookedTransformer's own (3.x) names and shapes, which 4.x's `convert_tl_checkpoint` maps onto
# the bridge, and the run's vocabulary. Safetensors and JSON only: opening it runs no code.
EXPORT_FORMAT = "mechlistops-tl4-export"
EXPORT_CONFIG, EXPORT_WEIGHTS, EXPORT_VOCAB = "config.json", "model.safetensors", "vocab.json"


# The fields an export's bridge config may hold: what `bridge_config` writes. Anything else (a
# tokenizer name, remote code) would make TransformerLens fetch or run something, so an export
# that holds more is refused.
BRIDGE_FIELDS = frozenset(
    (
        "n_layers",
        "d_model",
        "n_heads",
        "d_head",
        "d_mlp",
        "act_fn",
        "normalization_type",
        "n_ctx",
        "d_vocab",
        "d_vocab_out",
        "positional_embedding_type",
        "default_prepend_bos",
        "architecture",
    )
)


def bridge_config(hooked_transformer_config: dict) -> dict:
    """TransformerBridgeConfig kwargs for a run's HookedTransformerConfig kwargs: the same
    fields, built as 4.x's TL-native architecture (no Hugging Face model behind it)."""
    cfg = {k: v for k, v in hooked_transformer_config.items() if k != "original_architecture"}
    return {**cfg, "architecture": "TransformerLensNative"}


def boot_tl4(export_dir, device=None):
    """Open an exported run in TransformerLens 4.x: `TransformerBridge.boot_native` on its
    config, then its weights through `convert_tl_checkpoint`, loaded strictly. Opens only what
    `mechlistops export` writes: a config with other fields (a tokenizer name, remote code) is
    refused. Checks what 4.x users have been bitten by: every converted tensor must read back
    from the bridge's `state_dict` equal to what was loaded (a load that silently kept the
    random init fails here), and the export must not ask for tied embeddings (native models
    ignore them).
    Returns the bridge; the vocabulary is `json.load(open(EXPORT_DIR / "vocab.json"))`."""
    import torch
    from safetensors.torch import load_file
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    folder = Path(export_dir)
    meta = json.loads((folder / EXPORT_CONFIG).read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{folder}: not a mechlistops TransformerLens 4.x export")
    fields = meta["bridge_config"]
    if fields.get("tie_word_embeddings"):
        raise ValueError(f"{folder}: tied embeddings, which 4.x native models ignore")
    foreign = sorted(set(fields) - BRIDGE_FIELDS)
    if foreign or fields.get("architecture") != "TransformerLensNative":
        raise ValueError(f"{folder}: refusing bridge config fields {foreign or ['architecture']}")
    cfg = TransformerBridgeConfig(**fields)
    bridge = TransformerBridge.boot_native(cfg, device=device)
    converted = convert_tl_checkpoint(load_file(folder / EXPORT_WEIGHTS), cfg)
    bridge.load_state_dict(converted, strict=True)
    state = bridge.state_dict()
    wrong = [
        k
        for k, v in converted.items()
        if k not in state or not torch.equal(state[k].cpu(), v.to(state[k].dtype))
    ]
    if wrong:
        raise RuntimeError(f"{folder}: the bridge did not take these weights: {wrong[:3]}")
    return bridge.eval()
