"""The command line: the happy paths, and every bad input ending in one line and exit 2."""

import dataclasses
import hashlib
import json
import shutil

import pytest

from mechlistops.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the session's tiny run that a test may write into or damage."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def _one_line_error(code, err, fragment):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and fragment in lines[0], err


def test_data_sample_then_evaluate_agrees(tmp_path, capsys):
    out = tmp_path / "s.tsv"
    code, _, _ = _run(
        capsys,
        "data",
        "sample",
        "--ops",
        "SUM,MAX,MED",
        "--n",
        "300",
        "--seed",
        "0",
        "--out",
        str(out),
    )
    assert code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 300 and all("\t" in x and x.startswith("[") for x in lines)
    code, stdout, _ = _run(capsys, "data", "evaluate", str(out))
    assert code == 0 and "300 agree, 0 disagree" in stdout


def test_data_evaluate_reports_disagreements(tmp_path, capsys):
    f = tmp_path / "x.tsv"
    f.write_text("[SUM 3 [MAX 4 9 ] 2 ]\t4\n[SUM 3 [MAX 4 9 ] 2 ]\t5\n")
    code, out, _ = _run(capsys, "data", "evaluate", str(f))
    assert code == 1
    assert "1 agree, 1 disagree" in out and "line 2" in out and "evaluates to 4" in out


def test_data_evaluate_reads_original_listops(tmp_path, capsys):
    f = tmp_path / "listops.tsv"
    f.write_text(
        "Source\tTarget\n"
        "9\t( ( ( ( [MAX 2 ) 9 ) ( ( [MIN 4 7 ) ] ) ) 0 ) ] )\n"
        "1\t( ( [SM 2 ) 9 ) ] )\n"
    )
    code, out, _ = _run(capsys, "data", "evaluate", str(f))
    assert code == 0 and "2 agree" in out
    g = tmp_path / "med.tsv"
    g.write_text("2\t[MED 1 4 ]\n")  # int(np.median([1, 4])) = 2; lower middle = 1
    assert _run(capsys, "data", "evaluate", str(g))[0] == 0
    assert _run(capsys, "data", "evaluate", str(g), "--median", "lower")[0] == 1


def test_data_evaluate_labels_bare_expressions(tmp_path, capsys):
    f = tmp_path / "bare.txt"
    f.write_text("[SUM 3 [MAX 4 9 ] 2 ]\n[NADD 1 5 ]\n")
    code, out, _ = _run(capsys, "data", "evaluate", str(f))
    assert code == 0 and out.splitlines() == ["[SUM 3 [MAX 4 9 ] 2 ]\t4", "[NADD 1 5 ]\t6"]


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("[SUM 3 [MAX 4 9 ] 2\t4\n", "x.tsv:1: unbalanced"),
        ("[SUM 3 4 ]\t7\n[SUM 3 [FOO 4 9 ] 2 ]\t4\n", "x.tsv:2: unknown operator '[FOO'"),
        ("[SUM 3 [MAX 4 19 ] 2 ]\t4\n", "value 19 is outside the modulus 10"),
        ("[SUM 3 4 ]\t12\n", "answer 12 is outside the modulus"),
        ("[SUM 3 4 ]\tseven\n", "expected expression<TAB>answer"),
        ("", "no expressions"),
    ],
)
def test_data_evaluate_malformed_input(tmp_path, capsys, content, fragment):
    f = tmp_path / "x.tsv"
    f.write_text(content)
    code, _, err = _run(capsys, "data", "evaluate", str(f))
    _one_line_error(code, err, fragment)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--d-model", "30", "--n-heads", "4"], "not divisible by n_heads"),
        (["train", "--ops", "SUM,FOO"], "unknown operator 'FOO'"),
        (["train", "--max-args", "1", "--min-args", "2"], "min_args <= max_args"),
        (["train", "--max-depth", "0"], "max_depth"),
        (["train", "--modulus", "40"], "modulus must be in 2..36"),
        (["train", "--steps", "0"], "steps must be positive"),
        (["train", "--weights", "1,2"], "2 weights given for 3 operators"),
        (["train", "--pretrain-ops", "MAX"], "given together"),
        (["train", "--device", "cuda:banana"], "device"),
        (["train", "--init-from", "/nonexistent/run"], "no such run directory"),
        (["train", "--lr", "abc"], "invalid float value"),
        (["train", "--grad-clip", "-1"], "grad_clip must be a non-negative number"),
        (["train", "--steps", "9", "--budget-op", "SUM", "--budget-examples", "9"], "alternatives"),
        (["train", "--ops", "MAX", "--budget-op", "SUM", "--budget-examples", "9"], "not in the"),
        (["train", "--budget-op", "FOO", "--budget-examples", "9"], "is not one of"),
        (["train", "--stop-accuracy", "2"], "stop_accuracy must be in [0, 1]"),
        (["transition", "x", "--at-examples", "SUM"], "expected OP:N"),
        (["transition", "x", "--at-step", "-3"], "expected a positive step"),
        (["transition", "x", "--bootstrap", "0"], "expected 1..100,000"),
        (["transition", "x", "--threshold", "2"], "expected 0.001..1"),
        (["transition", "x", "--threshold", "nan"], "expected 0.001..1"),
        (
            ["sweep", "--mixture", "SUM", "--d-model", "8", "--seeds", "1000000000", "--out", "s"],
            "1..1,000",
        ),
        (["probe", "x", "--folds", "1"], "expected 2..100"),
        (["attribute", "x", "--top", "-1"], "expected 1..1,000"),
        (["geometry", "x", "--limit", "0"], "expected 1..1,000,000"),
        (["train", "--weight-decay", "nan"], "weight_decay must be a non-negative number"),
        (["train", "--eval-batch-size", "0"], "eval_batch_size must be positive"),
        (["train", "--normalization", "BN"], "'BN' is not one of LN, RMS, none"),
        (["train", "--length-buckets", "1"], "length_buckets must be 0 (off) or 2..1,024"),
        (["train", "--length-buckets", "100000"], "length_buckets must be 0 (off) or 2..1,024"),
        (["train", "--batch-size", "100000000"], "batch_size must be at most 65,536"),
        (["train", "--eval-batch-size", "100000000"], "eval_batch_size must be at most 65,536"),
        (["train", "--warmup-steps", "1000000000"], "warmup_steps must be at most 100,000,000"),
        (["train", "--tree", "single", "--train-size", "-1"], "train_size must be in 1.."),
        (["train", "--train-size", "3000"], "needs single-operator trees"),
        (
            ["train", "--tree", "single", "--train-size", "101", "--max-depth", "1"]
            + ["--max-args", "2"],
            "more than the 100 distinct",
        ),
        (
            ["train", "--tree", "single", "--train-size", "90", "--max-depth", "1"]
            + ["--max-args", "2", "--ops", "SUM"],
            "found only",
        ),
        (
            ["data", "sample", "--ops", "SUM", "--n", "0", "--out", "x.tsv"],
            "expected 1..10,000,000",
        ),
        (["data", "sample", "--ops", "MAX", "--n", "5", "--modulus", "1", "--out", "x"], "modulus"),
        (["data", "evaluate", "/nonexistent.tsv"], "no such file"),
        (["eval", "/nonexistent/run"], "no such run directory"),
    ],
)
def test_bad_arguments_fail_in_one_line(tmp_path, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, *argv)
    _one_line_error(code, err, fragment)
    assert not (tmp_path / "checkpoints").exists()  # nothing half-written


def _digest(run_dir):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def test_eval_prints_per_operator_accuracy(tiny_run, capsys):
    code, out, _ = _run(capsys, "eval", str(tiny_run), "--json")
    assert code == 0
    results = json.loads(out)
    saved = json.loads((tiny_run / "results.json").read_text())["results"]
    assert results["MAX"]["accuracy"] == saved["MAX"]["accuracy"]
    code, out, _ = _run(capsys, "eval", f"{tiny_run}@100")
    assert code == 0 and "MAX" in out and "baseline" in out


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (
            lambda d: (d / "model.safetensors").write_bytes(
                (d / "model.safetensors").read_bytes()[:1000]
            ),
            "truncated or not a safetensors",
        ),
        (
            lambda d: (d / "model.safetensors").write_bytes(b"\x80\x04K\x01." * 50),
            "truncated or not a safetensors",
        ),
        (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
        (lambda d: (d / "config.json").write_text("{ not json"), "corrupted JSON"),
        (lambda d: (d / "config.json").write_text('{"hello": 1}'), "not a mechlistops run"),
        (lambda d: (d / "config.json").unlink(), "not a run directory"),
        (lambda d: _resize(d, d_model=64), "weights do not match the config"),
        (
            lambda d: _edit_config(d, "hooked_transformer_config", "d_model", 64),
            "hooked_transformer_config does not match the run's own config",
        ),
        (lambda d: _edit_config(d, "model", "n_heads", 5), "not divisible"),
    ],
)
def test_damaged_checkpoints_fail_in_one_line(run, capsys, damage, fragment):
    damage(run)
    code, _, err = _run(capsys, "eval", str(run))
    _one_line_error(code, err, fragment)


def _resize(run, **model):
    """A config that describes another model than the weights (consistently throughout)."""
    from mechlistops.checkpoint import load_run_config
    from mechlistops.model import hooked_transformer_config_dict

    cfg = load_run_config(run)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model))
    raw = json.loads((run / "config.json").read_text())
    raw["model"] = cfg.to_dict()["model"]
    raw["hooked_transformer_config"] = hooked_transformer_config_dict(cfg.model, cfg.data)
    (run / "config.json").write_text(json.dumps(raw))


def _edit_config(run, section, key, value):
    raw = json.loads((run / "config.json").read_text())
    raw[section][key] = value
    (run / "config.json").write_text(json.dumps(raw))


def test_train_refuses_to_overwrite_and_resume_refuses_other_options(run, capsys):
    before = _digest(run)
    code, _, err = _run(capsys, "train", "--out", str(run), "--steps", "5")
    _one_line_error(code, err, "already holds a run")
    code, _, err = _run(capsys, "train", "--resume", str(run), "--steps", "5")
    _one_line_error(code, err, "--resume takes every setting from the run")
    code, _, err = _run(capsys, "train", "--resume", str(run))
    _one_line_error(code, err, "already finished")
    assert _digest(run) == before


def test_train_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = _run(
        capsys,
        "train",
        "--ops",
        "MAX,MIN",
        "--max-depth",
        "2",
        "--steps",
        "40",
        "--d-model",
        "16",
        "--n-heads",
        "2",
        "--n-layers",
        "1",
        "--test-size",
        "100",
        "--eval-interval",
        "20",
        "--no-progress",
        "--out",
        str(out),
    )
    assert code == 0
    assert "run saved to" in stdout and "baseline" in stdout and "MIN" in stdout
    assert (out / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert "CircuitsVis.render(" in (out / "report.html").read_text()
    raw = json.loads((out / "config.json").read_text())
    assert raw["data"]["ops"] == ["MAX", "MIN"] and raw["model"]["d_model"] == 16


def test_transfer_from_a_run_of_another_shape_fails_cleanly(tiny_run, tmp_path, capsys):
    out = tmp_path / "new"
    code, _, err = _run(
        capsys,
        "train",
        "--init-from",
        str(tiny_run),
        "--d-model",
        "48",
        "--n-heads",
        "2",
        "--out",
        str(out),
    )
    _one_line_error(code, err, "cannot transfer")
    assert not out.exists()


def test_ablate_cli_writes_table_json_and_figure(run, capsys):
    code, out, _ = _run(capsys, "ablate", str(run), "--component", "mlp", "--mode", "mean")
    assert code == 0 and "mlp L0" in out and "MAX" in out
    records = json.loads((run / "analysis" / "ablation_mlp_mean.json").read_text())
    assert {r["set"] for r in records} == {"MAX", "mixture"}
    assert (run / "analysis" / "ablation_mlp_mean.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = _run(capsys, "ablate", f"{run}@100", "--component", "head", "--json")
    assert code == 0 and len(json.loads(out)) == 2 * 2  # 2 heads x 2 sets
    assert (run / "analysis" / "ablation_head_zero_step100.json").exists()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--component", "mlp", "--layer", "3"], "layer 3 does not exist"),
        (["--component", "head", "--head", "9"], "head 9 does not exist"),
        (["--component", "mlp", "--ops", "SUM"], "no test set for SUM"),
        (["--component", "banana"], "invalid choice"),
    ],
)
def test_ablate_cli_bad_input(tiny_run, capsys, extra, fragment):
    code, _, err = _run(capsys, "ablate", str(tiny_run), *extra)
    _one_line_error(code, err, fragment)


def test_attribute_cli(run, capsys):
    code, out, _ = _run(capsys, "attribute", str(run), "--ops", "MAX")
    assert code == 0 and "usage ratio" in out and "L0 mlp" in out
    saved = json.loads((run / "analysis" / "attribution.json").read_text())
    assert {r["sublayer"] for r in saved["usage"]} == {"attn", "mlp"}
    assert {r["site"] for r in saved["patching"]} == {"L0 H0", "L0 H1", "L0 mlp"}
    assert "attribution patching" in out
    assert (run / "analysis" / "attribution.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = _run(capsys, "attribute", f"{run}@7")
    _one_line_error(code, err, "no checkpoint at step 7")


def test_geometry_cli(run, capsys):
    code, out, _ = _run(capsys, "geometry", str(run), "--limit", "100")
    assert code == 0 and "circularity" in out and "blocks.0.hook_resid_post @ =" in out
    saved = json.loads((run / "analysis" / "geometry.json").read_text())
    reps = ["W_E", "blocks.0.hook_resid_post", "blocks.0.hook_resid_post @ =", "W_U"]
    assert len(saved["cosine_W_E"]) == 10 and len(saved["metrics"]) == len(reps) * 5
    assert list(saved["fourier_spectra"]) == reps
    assert all(sum(s) == pytest.approx(1) for s in saved["fourier_spectra"].values())
    assert (run / "analysis" / "geometry.png").read_bytes()[:4] == b"\x89PNG"


def test_probe_cli(run, capsys):
    code, out, _ = _run(
        capsys,
        "probe",
        str(run),
        "--targets",
        "parity",
        "--positions",
        "answer",
        "--folds",
        "3",
        "--limit",
        "100",
    )
    assert code == 0 and "parity at answer" in out and "W_E" in out
    records = json.loads((run / "analysis" / "probes.json").read_text())
    assert {r["position"] for r in records} == {"embedding", "answer"}
    assert (run / "analysis" / "probes.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = _run(capsys, "probe", str(run), "--targets", "prime")
    _one_line_error(code, err, "unknown target 'prime'")


def test_report_is_one_offline_page(run, tmp_path, capsys):
    import re

    out = tmp_path / "report.html"
    code, stdout, _ = _run(
        capsys, "report", str(run), f"{run}@100", "--out", str(out), "--limit", "60"
    )
    assert code == 0 and "self-contained" in stdout
    page = out.read_text()
    assert page.count("var CircuitsVis=") == 1  # the bundle once per page
    assert page.count("CircuitsVis.render(") == 2 * 2 * 2  # 2 runs x 2 sets x 2 examples
    assert page.count("data:image/png;base64,") >= 2 * 4
    # nothing is loaded from anywhere: no remote src/href/import/url()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"""import\s*\(?\s*["']https?:""", page)
    assert not re.search(r"url\(\s*['\"]?https?:", page)
    for heading in (
        "Accuracy",
        "Ablation (mean)",
        "Usage ratio",
        "Direct logit attribution",
        "Parity probes",
        "Value geometry",
        "Attention patterns",
    ):
        assert heading in page


def test_train_branch_from_a_kept_state_and_its_bad_inputs(tmp_path, capsys):
    common = ["--ops", "MAX", "--max-depth", "2", "--d-model", "8", "--n-layers", "1"]
    common += ["--test-size", "100", "--eval-interval", "10", "--save-interval", "10"]
    common += ["--schedule", "wsd", "--warmup-steps", "5", "--no-progress", "--no-report"]
    trunk = tmp_path / "trunk"
    code, _, _ = _run(
        capsys, "train", *common, "--steps", "40", "--decay-steps", "10", "--keep-states",
        "--out", str(trunk),
    )  # fmt: skip
    assert code == 0
    before = _digest(trunk)
    bad = [
        (["--branch-from", str(trunk)], "expected RUN@STEP"),
        (["--branch-from", f"{trunk}@15"], "no kept resume state at step 15 (kept: 10, 20, 30)"),
        (["--branch-from", f"{tmp_path}/none@10"], "no such run directory"),
        (["--branch-from", f"{trunk}@20", "--d-model", "16"], "cannot change model.d_model"),
        (["--branch-from", f"{trunk}@20", "--steps", "20"], "is not before the branch's last"),
        (["--branch-from", f"{trunk}@20", "--resume", str(trunk)], "are alternatives"),
        (["--branch-from", f"{trunk}@20", "--out", str(trunk)], "already holds a run"),
    ]
    for argv, message in bad:
        code, _, err = _run(capsys, "train", *argv)
        _one_line_error(code, err, message)
    assert _digest(trunk) == before and sorted(p.name for p in tmp_path.iterdir()) == ["trunk"]
    code, out, _ = _run(
        capsys, "train", "--branch-from", f"{trunk}@30", "--steps", "60", "--decay-steps", "20",
        "--no-progress", "--no-report",
    )  # fmt: skip
    assert code == 0 and "60 steps" in out
    branched = tmp_path / "trunk-at30-to60"  # beside its parent by default
    assert json.loads((branched / "results.json").read_text())["step"] == 60
    assert json.loads((branched / "config.json").read_text())["branch"]["step"] == 30
    assert _digest(trunk) == before


def _test_set_file(run_dir, path, op="MAX"):
    """The run's own test set of `op`, written as `expression<TAB>answer` lines."""
    from mechlistops.checkpoint import load_run_config
    from mechlistops.data import make_test_sets
    from mechlistops.listops import Vocab

    data = load_run_config(run_dir).data
    ex, vocab = make_test_sets(data)[op], Vocab.of(data)
    path.write_text("".join(f"{e}\t{a}\n" for e, a in zip(ex.expressions(vocab), ex.answers)))
    return path


@pytest.mark.parametrize("cot", [False, True])
def test_eval_answers_expressions_a_user_brings(tiny_run, tmp_path, capsys, cot):
    """`eval --file` scores the model as its own evaluation does: its test set given as a
    file gets the accuracy results.json holds (greedy at `=`, or its own chain of thought)."""
    run_dir = tiny_run
    if cot:
        from mechlistops.train import train
        from tests.conftest import tiny_config

        run_dir = tmp_path / "cot"
        cfg = tiny_config(data={"chain_of_thought": True}, train={"steps": 40})
        train(cfg, run_dir, progress=False)
    saved = json.loads((run_dir / "results.json").read_text())["results"]["MAX"]
    tests = _test_set_file(run_dir, tmp_path / "max.tsv")
    code, out, _ = _run(capsys, "eval", str(run_dir), "--file", str(tests), "--json")
    got = json.loads(out)
    assert code == 0 and got["n"] == saved["n"] and got["accuracy"] == saved["accuracy"]
    assert got["trained_on"] == ["MAX"] and len(got["wrong"]) <= 5
    assert sum(d["n"] for d in got["by_depth"].values()) == got["n"]
    assert sum(d["n"] * d["accuracy"] for d in got["by_depth"].values()) == pytest.approx(
        got["n"] * got["accuracy"]
    )
    code, out, _ = _run(capsys, "eval", str(run_dir), "--file", str(tests), "--show", "2")
    assert code == 0 and f"{saved['accuracy']:.3f}" in out and "labels agree" in out
    assert out.count("  model ") == min(2, len(got["wrong"]))  # the wrong answers listed
    code, out, _ = _run(
        capsys, "eval", str(run_dir), "--expr", "[MAX 1 7 2 ]", "--expr", "[MIN 4 [MAX 3 8 ] ]"
    )
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("[MAX 1 7 2 ] = 7   model: ")
    assert lines[1].startswith("[MIN 4 [MAX 3 8 ] ] = 4   model: ")
    assert "not trained on" not in lines[0] and lines[1].endswith("  (MIN: not trained on)")
    assert ("(p " in lines[0]) != cot  # a chain of thought has no one probability
    long = "[MAX " + "1 " * 30 + "]"  # 36 tokens: past the context, with a chain too
    code, out, _ = _run(capsys, "eval", str(run_dir), "--expr", long, "--expr", "[MAX 1 7 2 ]")
    assert code == 2
    code, out, _ = _run(
        capsys, "eval", str(run_dir), "--expr", long, "--expr", "[MAX 1 7 2 ]", "--skip-long"
    )
    assert code == 0 and out.startswith("[MAX 1 7 2 ] = 7   model: ")
    assert "(1 expression(s) longer than the model's" in out


def test_eval_expressions_bad_input_fails_in_one_line(tiny_run, tmp_path, capsys):
    r = str(tiny_run)
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text("[MAX 1 2 ]\t2\n[SUM 5 7 ]\t3\n")  # 5 + 7 = 2 mod 10
    long = "[MAX 1 [MAX 1 2 3 ] [MAX 1 2 3 ] [MAX 1 2 3 ] ]"  # 22 tokens; the model reads 21
    mixed = tmp_path / "mixed.tsv"
    mixed.write_text(f"[MAX 1 2 ]\t2\n{long}\t3\n")
    for argv, fragment in (
        (["--file", str(wrong)], "wrong.tsv:2: labelled 3, but this run's task (modulus 10"),
        (["--file", str(tmp_path / "none.tsv")], "none.tsv: no such file"),
        (["--file", str(tmp_path)], "a directory, not a file"),
        (["--expr", "[MAX 1 12 ]"], "expression 1: value 12 is outside the modulus 10"),
        (["--expr", "[MAX 1 2 ]", "--expr", "[FOO 1 ]"], "expression 2: unknown operator"),
        (["--expr", long], "expression 1: 22 tokens with its answer, but this run's model"),
        (["--file", str(mixed)], "mixed.tsv:2: 22 tokens"),
        (["--expr", long, "--skip-long"], "no expression fits this run's model"),
        (["--expr", "[MAX 1 ]", "--file", str(mixed)], "not allowed with argument"),
        (["--file", str(mixed), "--show", "-1"], "--show"),
    ):
        code, _, err = _run(capsys, "eval", r, *argv)
        _one_line_error(code, err, fragment)
    code, out, _ = _run(capsys, "eval", r, "--file", str(mixed), "--skip-long")
    assert code == 0 and "1 longer than the model's 21 tokens left out" in out
