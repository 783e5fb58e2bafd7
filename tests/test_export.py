"""`mechlistops export`: a run as a folder TransformerLens 4.x opens (mechlistops.tl.boot_tl4).

The first tests check the folder in this (3.x) environment; the last opens exports of
several model shapes in a second environment with TransformerLens 4.x and asks for the same
logits to the bit. It builds that environment on first use (network: PyPI; about a minute)
under ~/.cache/mechlistops/tl4-venv, or uses the Python named by MECHLISTOPS_TL4_PYTHON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mechlistops.checkpoint import load_run
from mechlistops.cli import main
from mechlistops.export import export_tl4
from mechlistops.pools import evaluation_data
from mechlistops.tl import HookedTransformer, HookedTransformerConfig
from mechlistops.train import train
from tests.conftest import tiny_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _tiny(tmp_path: Path) -> Path:
    run = tmp_path / "tiny"
    train(tiny_config(train={"steps": 10}), run, progress=False)
    return run


def reference_logits(run_dir: Path, out: Path) -> Path:
    """The run's logits (HookedTransformer 3.x) on 64 of its own test expressions."""
    run = load_run(run_dir)
    sets, _ = evaluation_data(run.config.data)
    tokens = torch.as_tensor(next(iter(sets.values())).tokens[:64]).long()  # uint8 would mask
    with torch.no_grad():
        logits = run.model(tokens)
    save_file({"tokens": tokens, "logits": logits}, str(out))
    return out


def test_export_holds_the_bridge_config_weights_and_vocab(tiny_run, tmp_path):
    out = export_tl4(str(tiny_run), tmp_path / "export")
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "mechlistops-tl4-export"
    assert meta["bridge_config"]["architecture"] == "TransformerLensNative"
    assert "original_architecture" not in meta["bridge_config"]
    assert meta["source"]["step"] is None
    assert json.loads((out / "vocab.json").read_text()) == json.loads(
        (tiny_run / "vocab.json").read_text()
    )
    # The weights are HookedTransformer's own, without its attention buffers: a 3.x model built
    # from the same fields and loaded from them computes the run's logits exactly.
    weights = load_file(out / "model.safetensors")
    assert not any(k.endswith((".mask", ".IGNORE")) for k in weights)
    fields = {k: v for k, v in meta["bridge_config"].items() if k != "architecture"}
    model = HookedTransformer(HookedTransformerConfig(**fields))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.endswith((".mask", ".IGNORE")) for k in missing)
    ref = load_file(reference_logits(tiny_run, tmp_path / "ref.safetensors"))
    with torch.no_grad():
        assert torch.equal(model(ref["tokens"]), ref["logits"])
    assert oct(os.stat(out / "model.safetensors").st_mode & 0o777) == "0o644"


def test_export_of_a_step_and_of_a_looped_run(tiny_run, tmp_path):
    out = export_tl4(f"{tiny_run}@100", tmp_path / "at100")
    assert json.loads((out / "config.json").read_text())["source"]["step"] == 100
    looped = tmp_path / "looped"
    train(tiny_config(model={"n_layers": 2, "looped": True}, train={"steps": 20}), looped,
          progress=False)  # fmt: skip
    weights = load_file(export_tl4(str(looped), tmp_path / "looped-export") / "model.safetensors")
    # every layer listed (4.x has no tied blocks), each a copy of block 0
    assert torch.equal(weights["blocks.1.attn.W_Q"], weights["blocks.0.attn.W_Q"])


def test_export_bad_input_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    (tmp_path / "file").write_text("keep")
    cases = [
        ([str(tiny_run), "--out", str(tmp_path / "full")], "not empty"),
        ([str(tiny_run), "--out", str(tmp_path / "file")], "is a file"),
        ([str(tmp_path / "nothing"), "--out", str(tmp_path / "a")], "no such run"),
        ([f"{tiny_run}@7", "--out", str(tmp_path / "b")], "no checkpoint at step 7"),
    ]
    for argv, message in cases:
        assert main(["export", *argv]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "full" / "x").read_text() == "keep"
    assert (tmp_path / "file").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]  # no temp folders


# ----------------------------------------------------------------------------- TransformerLens 4.x
def tl4_python() -> str:
    """A Python with TransformerLens 4.x and this checkout's torch: MECHLISTOPS_TL4_PYTHON, or a
    virtual environment built once under ~/.cache/mechlistops."""
    given = os.environ.get("MECHLISTOPS_TL4_PYTHON")
    if given:
        return given
    venv = Path.home() / ".cache" / "mechlistops" / "tl4-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pin = f"torch=={torch.__version__.split('+')[0]}"
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", pin, "transformer-lens>=4,<5"],
            check=True,
        )
    return str(python)


SHAPES = {
    "layernorm-relu": {"model": {"n_layers": 2, "d_model": 32, "n_heads": 2}},
    "layernorm-gelu": {"model": {"act_fn": "gelu"}},
    "rmsnorm": {"model": {"normalization": "RMS"}},
    "no-norm-silu": {"model": {"normalization": None, "act_fn": "silu"}},
    "looped-single-head": {"model": {"n_layers": 2, "n_heads": 1, "looped": True}},
    "permutations": {"data": {"family": "perm", "group_k": 3, "ops": ("PRD", "SGN")}},
}


def test_tl4_opens_every_export_with_identical_logits(tmp_path):
    # and refuses an export whose config asks for more than mechlistops writes
    hostile = tmp_path / "hostile"
    shutil.copytree(export_tl4(str(_tiny(tmp_path)), tmp_path / "plain"), hostile)
    meta = json.loads((hostile / "config.json").read_text())
    meta["bridge_config"]["tokenizer_name"] = "someone/else"
    (hostile / "config.json").write_text(json.dumps(meta))
    args = []
    for name, override in SHAPES.items():
        run = tmp_path / name
        train(tiny_config(**override, train={"steps": 30}), run, progress=False)
        export = export_tl4(str(run), tmp_path / f"{name}-tl4")
        args.append(f"{export}:{reference_logits(run, tmp_path / f'{name}.safetensors')}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    refused = subprocess.run(
        [tl4_python(), "-c", f"from mechlistops.tl import boot_tl4; boot_tl4({str(hostile)!r})"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert refused.returncode != 0 and "refusing bridge config fields" in refused.stderr
    done = subprocess.run(
        [tl4_python(), str(HERE / "tl4_check.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    diffs = {Path(k).name: v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    assert sorted(diffs) == sorted(f"{name}-tl4" for name in SHAPES)
    # Bit for bit, except RMSNorm: 4.x's native one multiplies by rsqrt(mean square + eps)
    # where 3.x divides by its sqrt, a difference in the last bits (1.2e-6 seen).
    assert all(d == 0.0 for k, d in diffs.items() if k != "rmsnorm-tl4"), diffs
    assert 0 <= diffs["rmsnorm-tl4"] < 1e-5, diffs
