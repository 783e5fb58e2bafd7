"""Every TransformerLens name mechlistops uses, imported here and only here.

TransformerLens 4.0 removed `HookedTransformer` in favour of `TransformerBridge`; keeping the
imports in one module means a move to 4.x (or a shim for it) touches this file alone.
"""

from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.hook_points import HookPoint

__all__ = ["HookedTransformer", "HookedTransformerConfig", "HookPoint"]
