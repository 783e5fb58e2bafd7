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

from transformer_lens import HookedTransformer, HookedTransformerConfig, patching  # noqa: E402
from transformer_lens.hook_points import HookPoint  # noqa: E402

__all__ = ["HookedTransformer", "HookedTransformerConfig", "HookPoint", "patching"]
