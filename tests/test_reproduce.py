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
    # stage 9's recipe keeps its own steps and decay at any scale, the curriculum's too
    sampled = dataclasses.replace(TINY, regime=reproduce.REGIMES["sampled"])
    for name, s in sweeps(sampled).items():
        data, train = s.base.data, s.base.train
        assert (data.train_size, data.pool_draw, data.min_args) == (12_500, "sampled", 3)
        assert s.base.model.looped and s.base.model.n_heads == 1
        assert (train.steps, train.schedule, train.decay_steps) == (28_000, "wsd", 10_000)
        assert train.min_lr_frac == 0.0 and train.eval_interval == 500
        assert train.pretrain_steps == (28_000 if name == "curriculum" else 0)
    assert "1 seeds, 28,000 steps per run (curriculum: 28,000 MAX+MED" in reproduce.describe(
        sampled
    )


def test_a_regime_reads_as_command_line_options():
    from mechlistops.cli import build_parser
    from mechlistops.cli.train import run_config_from_args

    assert reproduce.options({"train_size": 12_500, "looped": True, "cot": False}) == [
        "--train-size", "12500", "--looped", "--no-cot",
    ]  # fmt: skip
    regime = reproduce.REGIMES["sampled"]
    argv = ["sweep", "--mixture", "SUM", "--d-model", "8", "--out", "x", "--tree", "single"]
    args = build_parser().parse_args([*argv, *reproduce.options(regime.settings())])
    cfg = run_config_from_args(args)  # every setting of the regime arrives
    for part, settings in (("data", regime.data), ("model", regime.model), ("train", regime.train)):
        for name, value in settings:
            assert getattr(getattr(cfg, part), name) == value, name
    assert (cfg.data.train_size, cfg.train.decay_steps, cfg.model.looped) == (12_500, 10_000, True)


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
