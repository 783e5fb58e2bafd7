"""Run by tests/test_export.py in a second environment, one with TransformerLens 4.x: opens
each export with `mechlistops.tl.boot_tl4` and prints, as JSON, the max |logit difference|
against the logits HookedTransformer (3.x) gave on the same tokens.

    python tests/tl4_check.py EXPORT:REFERENCE.safetensors [...]
"""

import json
import sys

import torch
from safetensors.torch import load_file

from mechlistops.tl import TL_MAJOR, boot_tl4

assert TL_MAJOR >= 4, f"needs TransformerLens 4.x, found {TL_MAJOR}.x"
out = {}
for arg in sys.argv[1:]:
    export, reference = arg.split(":")
    ref = load_file(reference)
    bridge = boot_tl4(export)
    with torch.no_grad():
        logits = bridge(ref["tokens"])
    out[export] = (logits - ref["logits"]).abs().max().item()
print(json.dumps(out))
