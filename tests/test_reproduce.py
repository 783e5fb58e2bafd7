"""`mechlistops reproduce`: the three sweeps, one transition table across them, a summary."""

import dataclasses
import json

from mechlistops import reproduce
from mechlistops.cli import main
from mechlistops.reproduce import Scale, sweeps

TINY = Scale(
    "quick",
    d_models=(4, 8, 12, 16),
    seeds=1,
    steps=20,
    joint=(("SUM", "MAX"),),
    single=(("MAX",), ("SUM",)),
    test_size=50,
    note="a test-sized scale",
)


def test_study_layout():
    quick = sweeps(reproduce.SCALES["quick"])
    assert set(quick) == {"single", "joint", "curriculum"}
    assert ("SUM",) in quick["single"].mixtures and ("NADD",) in quick["single"].mixtures
    assert ("SSUM", "MAX", "MED") in quick["joint"].mixtures
    curriculum = quick["curriculum"].base.train
    assert curriculum.pretrain_ops == ("MAX", "MED") and curriculum.pretrain_steps == 1500
    assert all(s.base.data.tree == "single" for s in quick.values())
    assert all(s.base.data.min_args == 2 for s in quick.values())  # the "stream" regime
    paper = dataclasses.replace(reproduce.SCALES["quick"], regime=reproduce.REGIMES["paper"])
    for s in sweeps(paper).values():
        assert s.base.data.min_args == 3 and s.base.data.train_size == 3000
        assert s.base.model.looped and s.base.model.n_heads == 1


def test_reproduce_cli_states_its_scale_and_summarises(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(reproduce.SCALES, "quick", TINY)
    out = tmp_path / "repro"
    args = ["reproduce", "--quick", "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("reproduction at quick scale: d_model 4,8,12,16 (2 layers), 1 seeds")
    assert "regime paper: a finite pool of 3,000" in stdout
    for path in out.glob("*/*/config.json"):
        saved = json.loads(path.read_text())
        assert saved["data"]["min_args"] == 3 and saved["model"]["looped"]
    assert "a test-sized scale" in stdout
    # 2 single + 1 joint + 1 curriculum mixtures x 4 sizes
    assert len(list(out.glob("*/*/results.json"))) == 16
    rows = json.loads((out / "transitions.json").read_text())
    settings = {(r["op"], r["mixture"]) for r in rows}
    assert {("SUM", "SUM"), ("SUM", "SUM+MAX"), ("SUM", "SUM after MAX+MED")} <= settings
    assert ("MAX", "SUM after MAX+MED") not in settings  # pretraining test sets left out
    summary = (out / "summary.md").read_text()
    for claim, setting in (("1", "| SUM | SUM |"), ("2", "| SUM | SUM+MAX |")):
        assert f"| {claim} {setting}" in summary
    assert "| 6 | SUM | SUM after MAX+MED |" in summary
    assert (out / "transitions_heldout.png").read_bytes()[:4] == b"\x89PNG"
    # a rerun trains nothing and rewrites the same summary
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*/model.safetensors")}
    assert main(args) == 0
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/*/model.safetensors")}
    assert (out / "summary.md").read_text() == summary
