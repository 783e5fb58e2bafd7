"""A saved run as a folder that TransformerLens 4.x opens: `mechlistops export RUN[@STEP]`.

mechlistops trains and analyses with TransformerLens 3.x's HookedTransformer, which 4.0
removed. The export holds what 4.x's own loader needs (`mechlistops.tl` names the files and
opens them with `boot_tl4`): the TransformerBridgeConfig fields, the weights as
HookedTransformer names them (4.x's `convert_tl_checkpoint` takes exactly these), and the
vocabulary. In an environment with TransformerLens 4.x:

    from mechlistops.tl import boot_tl4          # or the six lines of docs/analysis.md
    bridge = boot_tl4("exported/")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mechlistops import __version__
from mechlistops.atomic import OutputError, check_writable_dir, write_json
from mechlistops.checkpoint import load_run, save_tensors
from mechlistops.model import hooked_transformer_config_dict
from mechlistops.tl import (
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORT_VOCAB,
    EXPORT_WEIGHTS,
    bridge_config,
)

# HookedTransformer's attention buffers (the causal mask, the masking value): not weights, and
# the bridge has none of them.
_BUFFERS = (".mask", ".IGNORE")


def export_tl4(spec: str, out: str | Path) -> Path:
    """Write the run `spec` (RUN or RUN@STEP) into the new folder `out`; returns it. The
    folder appears whole or not at all (written beside it, then renamed)."""
    out = check_writable_dir(out, "export folder")
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"{out}: exists and is not empty; export into a new folder")
    run = load_run(spec)
    ht_cfg = hooked_transformer_config_dict(run.config.model, run.config.data)
    weights = {k: v for k, v in run.model.state_dict().items() if not k.endswith(_BUFFERS)}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; an export is meant to be shared
        save_tensors(tmp / EXPORT_WEIGHTS, weights)
        write_json(tmp / EXPORT_VOCAB, run.vocab.to_dict())
        write_json(
            tmp / EXPORT_CONFIG,
            {
                "format": EXPORT_FORMAT,
                "bridge_config": bridge_config(ht_cfg),
                "source": {
                    "run": str(run.run_dir),
                    "step": run.step,  # null: the final weights
                    "mechlistops": __version__,
                    "looped": run.config.model.looped,
                },
            },
        )
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write it ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
