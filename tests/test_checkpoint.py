"""The run directory across format versions: runs saved by run format 1 (before `device` left
the config) load, evaluate, resume to the weights their own code reached, and analyse.

tests/data/format1/ was written by the code of run format 1: `finished` is a 40-step run,
`interrupted` the same run killed after step 30 (resume state at step 20).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mechlistops import checkpoint as ckpt
from mechlistops import load_run
from mechlistops.cli import main
from mechlistops.evaluate import evaluate_sets
from mechlistops.pools import evaluation_data
from mechlistops.train import train
from tests.conftest import assert_same_weights

FORMAT1 = Path(__file__).parent / "data" / "format1"


def _copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(FORMAT1 / name, tmp_path / name))


def test_format1_run_loads_and_scores_as_it_did():
    raw = json.loads((FORMAT1 / "finished" / "config.json").read_text())
    assert raw["format"] == "mechlistops-run/1" and "device" in raw["train"]
    run = load_run(FORMAT1 / "finished")
    sets, pools = evaluation_data(run.config.data)
    saved = json.loads((FORMAT1 / "finished" / "results.json").read_text())["results"]
    for name, result in evaluate_sets(run.model, sets, run.config.data, pools=pools).items():
        assert result.accuracy == saved[name]["accuracy"], name
        # written on another CPU: its kernels may round the last bits differently
        assert result.loss == pytest.approx(saved[name]["loss"], rel=1e-6), name


@pytest.fixture
def one_thread():
    """The fixture runs were trained on one thread; float sums on two threads differ."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_format1_interrupted_run_resumes_to_the_weights_its_code_reached(tmp_path, one_thread):
    run_dir = _copy(tmp_path, "interrupted")
    cfg = ckpt.load_run_config(run_dir)
    train(cfg, run_dir, resume=True, progress=False)
    expected = load_file(FORMAT1 / "finished" / "model.safetensors")
    got = load_file(run_dir / "model.safetensors")
    assert_same_weights(expected, got, atol=1e-6)  # trained on another CPU: to its rounding
    assert [r["step"] for r in ckpt.read_metrics(run_dir)] == [20, 40]


def test_format1_run_resumes_and_analyses_from_the_cli(tmp_path, capsys):
    run_dir = _copy(tmp_path, "interrupted")
    assert main(["train", "--resume", str(run_dir), "--no-progress", "--no-report"]) == 0
    assert main(["geometry", str(run_dir), "--limit", "50"]) == 0
    assert main(["ablate", str(_copy(tmp_path, "finished")), "--component", "mlp"]) == 0
    assert "ordering" in capsys.readouterr().out


def test_new_weights_files_say_pt_beside_the_run_format(tiny_run):
    with safe_open(str(tiny_run / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["mechlistops"] == ckpt.FORMAT
    raw = json.loads((tiny_run / "config.json").read_text())
    assert raw["format"] == ckpt.FORMAT and "device" not in raw["train"]


def test_a_hostile_config_builds_nothing_it_names(tmp_path, capsys):
    """A config.json naming a local tokenizer with remote code: refused before TransformerLens
    sees it, and the code (which would write a marker) never runs."""
    run_dir = _copy(tmp_path, "finished")
    code = tmp_path / "evil"
    code.mkdir()
    marker = tmp_path / "ran"
    (code / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (code / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_evil.Evil", None]}})
    )
    raw = json.loads((run_dir / "config.json").read_text())
    raw["hooked_transformer_config"].update(tokenizer_name=str(code), trust_remote_code=True)
    (run_dir / "config.json").write_text(json.dumps(raw))
    assert main(["eval", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the run's own config" in err[0]
    assert "tokenizer_name" in err[0]
    assert not marker.exists()


def test_train_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["train", "--out", str(out), "--steps", "5", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_resume_state_with_an_impossible_step_changes_nothing(tmp_path, capsys):
    run_dir = _copy(tmp_path, "interrupted")
    tensors, meta = ckpt.load_tensors(run_dir / "state.safetensors")
    ckpt.save_tensors(run_dir / "state.safetensors", tensors, {**meta, "step": 10**9})

    def files():  # RUN/.lock, the (empty) claim file, is made by any resume
        return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}

    before = files()
    assert main(["train", "--resume", str(run_dir), "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a step of this run" in err[0]
    assert before == files()


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    import mechlistops.train as train_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train", interrupted)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "5"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mechlistops: interrupted; continue with: mechlistops train --resume {out}"]


def test_one_run_directory_is_trained_by_one_process_at_a_time(tmp_path):
    from mechlistops.errors import ConfigError

    run_dir = _copy(tmp_path, "interrupted")
    held = ckpt.claim_run(run_dir, new=False)  # as a training process would hold it
    with pytest.raises(ConfigError, match="being trained by another process"):
        train(ckpt.load_run_config(run_dir), run_dir, resume=True, progress=False)
    new = tmp_path / "fresh"
    other = ckpt.claim_run(new, new=True)  # a run started in the same second, same name
    with pytest.raises(ConfigError, match="being trained by another process"):
        ckpt.claim_run(new, new=True)
    held.release()
    other.release()
    train(ckpt.load_run_config(run_dir), run_dir, resume=True, progress=False)  # free again
    assert ckpt.is_finished(run_dir)
