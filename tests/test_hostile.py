"""The fuzz harness: hostile and broken inputs everywhere.

1. Property-based tests (hypothesis) of the parser and evaluator: any expression tree we can
   draw parses back from its text and evaluates as the independent reference below; any text
   or bytes either parses or raises ParseError, nothing else; nesting of any depth.
2. A table of bad inputs for every command: each case sets up a directory (a copy of a tiny
   run, damaged files, paths in the way), hashes every file under it, runs the command
   in-process and asserts a non-zero exit, exactly one line on stderr naming the problem, no
   traceback, and every file unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechlistops.cli import main
from mechlistops.errors import ParseError
from mechlistops.files import check_file
from mechlistops.listops import MAX_NESTING, evaluate, parse, to_text

OPS = ("MAX", "MIN", "MED", "SUM", "PROD", "NADD")


# ----------------------------------------------------------------------------- reference
def reference(tree, modulus: int) -> int:
    """Value of a tree given as (op, [children]) or an int, written independently of
    `listops.apply_op` (no shared helpers; the ListOps median rule spelled out)."""
    if isinstance(tree, int):
        return tree
    op, kids = tree
    vals = [reference(k, modulus) for k in kids]
    if op == "MAX":
        return max(vals)
    if op == "MIN":
        return min(vals)
    if op == "SUM":
        return sum(vals) % modulus
    if op == "PROD":
        out = 1
        for v in vals:
            out = out * v % modulus
        return out
    if op == "NADD":
        return (sum(vals[0::2]) - sum(vals[1::2])) % modulus
    ordered = sorted(vals)  # MED
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else math.floor((ordered[mid - 1] + ordered[mid]) / 2)


def text_of(tree) -> str:
    if isinstance(tree, int):
        return str(tree)
    op, kids = tree
    return f"[{op} " + " ".join(text_of(k) for k in kids) + " ]"


def trees(modulus: int):
    leaves = st.integers(0, modulus - 1)
    return st.recursive(
        leaves,
        lambda kids: st.tuples(st.sampled_from(OPS), st.lists(kids, min_size=1, max_size=5)),
        max_leaves=40,
    ).filter(lambda t: not isinstance(t, int))


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 36).flatmap(lambda n: st.tuples(st.just(n), trees(n))))
def test_drawn_trees_parse_and_evaluate_as_the_reference(case):
    modulus, tree = case
    text = text_of(tree)
    parsed = parse(text, modulus)
    assert to_text(parsed) == text
    assert evaluate(parsed, modulus) == reference(tree, modulus)


_WORDS = st.sampled_from(
    [
        "[SUM",
        "[MAX",
        "[MED",
        "[SM",
        "[FOO",
        "]",
        "[",
        "(",
        ")",
        "0",
        "7",
        "9",
        "10",
        "-3",
        "٣",
        "３",
        "1" * 30,
        "x",
        "",
        " ",
        "\t",
        "\x00",
        "[SUM\u00a0",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_WORDS, max_size=30).map(" ".join)))
def test_any_text_parses_or_raises_parse_error(text):
    try:
        tree = parse(text)
    except ParseError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert 0 <= evaluate(tree) < 10
    assert parse(to_text(tree)) == tree


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_any_file_is_checked_or_refused_in_one_line(tmp_path, data):
    f = tmp_path / "x.tsv"
    f.write_bytes(data)
    try:
        check_file(f)
    except ParseError as exc:
        assert str(exc).startswith(str(f)) and "\n" not in str(exc)


@pytest.mark.parametrize("depth", [1, 50, MAX_NESTING, MAX_NESTING + 1, 600, 5000])
def test_nesting_of_any_depth(depth):
    text = "[SUM " * depth + "1 " + "] " * depth
    if depth <= MAX_NESTING:
        assert evaluate(parse(text)) == 1
    else:
        with pytest.raises(ParseError, match=f"nesting deeper than {MAX_NESTING}"):
            parse(text)


# ----------------------------------------------------------------------------- the CLI table
def _digest(root: Path) -> dict[str, str]:
    """Every file's hash and every directory under `root` (not RUN/.lock: the empty file a
    claim on a run leaves, by design; see checkpoint.RunLock)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
        if not p.is_symlink() and p.name != ".lock"
    }


def _edit_json(path: Path, edit) -> None:
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def _edit_state(path: Path, edit) -> None:
    """Change the JSON metadata of a resume state (a valid safetensors file afterwards)."""
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["json"])
    edit(meta)
    header["__metadata__"]["json"] = json.dumps(meta)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + blob[8 + n :])


def _sweep_dir(d: Path, body: str) -> None:
    (d / "sw").mkdir()
    (d / "sw" / "sweep.json").write_text(body)


def _sweep_of_run(d: Path, run: Path, results: str) -> None:
    """A one-member sweep whose member is a copy of the tiny run, with `results` as its
    results.json."""
    from mechlistops.checkpoint import load_run_config
    from mechlistops.sweep import SweepConfig

    cfg = load_run_config(run)
    sweep = SweepConfig((cfg.data.ops,), (cfg.model.d_model,), 1, cfg)
    (d / "sw").mkdir()
    (d / "sw" / "sweep.json").write_text(json.dumps(sweep.to_dict()))
    member = d / "sw" / sweep.members()[0].name
    shutil.copytree(run, member)
    (member / "results.json").write_text(results)


def _sweep_seeds(d: Path, run: Path, seeds) -> None:
    """The tiny run's one-member sweep, its sweep.json's seeds replaced by `seeds`."""
    _sweep_of_run(d, run, (run / "results.json").read_text())
    doc = json.loads((d / "sw" / "sweep.json").read_text())
    (d / "sw" / "sweep.json").write_text(json.dumps({**doc, "seeds": seeds}))


def _files(d: Path) -> None:
    (d / "deep.tsv").write_text("[SUM " * 600 + "1 " + "] " * 600 + "\t1\n")
    (d / "long.tsv").write_text("[SUM " + "1" * 5000 + " 2 ]\t3\n")
    (d / "arabic.tsv").write_text("[SUM \u0663 2 ]\t5\n")
    (d / "fullwidth.tsv").write_text("[SUM \uff13 2 ]\t5\n")
    (d / "label.tsv").write_text("[SUM 3 2 ]\t\u0665\n")
    (d / "binary.tsv").write_bytes(b"\xff\xfe\x00[SUM")
    (d / "a_file").write_text("not a directory")
    head = "run,op,mixture,seed,n_params,accuracy\n"
    (d / "runs.csv").write_text(head + "a,SUM,SUM,0,1718,0.5\nb,SUM,SUM,1,3142,0.9\n")
    (d / "binary.csv").write_bytes(b"\xff\xfe\x00\x81,\x00\n\x9c")
    (d / "no_accuracy.csv").write_text("run,op,mixture,seed,n_params\na,SUM,SUM,0,1718\n")
    (d / "accuracy_1.5.csv").write_text(head + "a,SUM,SUM,0,1718,1.5\n")
    (d / "accuracy_inf.csv").write_text(head + "a,SUM,SUM,0,1718,inf\n")
    (d / "size_-3.csv").write_text(head + "a,SUM,SUM,0,-3,0.5\n")
    (d / "size_0.csv").write_text(head + "a,SUM,SUM,0,0,0.5\n")
    (d / "seed_word.csv").write_text(head + "a,SUM,SUM,one,1718,0.5\n")
    (d / "no_op.csv").write_text(head + "a,,SUM,0,1718,0.5\n")
    (d / "header_only.csv").write_text(head)
    (d / "cut_short.csv").write_text(head + "a,SUM,SUM,0,1718,0.5\nb,SUM,SUM,1,31")
    (d / "a_dir" / "empty").mkdir(parents=True)


LIMIT = ["--limit", "20"]
R = "{run}"  # the tiny run's copy
CASES = {
    # expressions
    "deep nesting": (["data", "evaluate", "deep.tsv"], "nesting deeper than"),
    "4,300+ digit value": (["data", "evaluate", "long.tsv"], "ASCII digits"),
    "Arabic-Indic digit": (["data", "evaluate", "arabic.tsv"], "ASCII digits"),
    "full-width digit": (["data", "evaluate", "fullwidth.tsv"], "ASCII digits"),
    "non-ASCII label": (["data", "evaluate", "label.tsv"], "expected expression<TAB>answer"),
    "binary file": (["data", "evaluate", "binary.tsv"], "not a text file"),
    "huge modulus": (["data", "evaluate", "--modulus", "1000000000000", "deep.tsv"], "2..36"),
    "negative --show": (["data", "evaluate", "--show", "-1", "deep.tsv"], "0..1,000,000"),
    "eval --show, no file": (["eval", R, "--show", "3"], "--show: only with --file"),
    "eval --skip-long alone": (["eval", R, "--skip-long"], "--skip-long: only with --expr or"),
    "negative sample seed": (["data", "sample", "--n", "3", "--seed", "-1", "--out", "s"], "0.."),
    "huge sample": (["data", "sample", "--n", "100000000000", "--out", "s.tsv"], "1..10,000,000"),
    # sizes and seeds
    "negative seed": (["train", "--seed", "-1"], "seed must be in 0.."),
    "negative data seed": (["train", "--data-seed", "-1"], "data seed must be in 0.."),
    "negative holdout": (["train", "--holdout-min-leaves", "-1"], "holdout_min_leaves must be 0"),
    "huge d_model": (["train", "--d-model", "10000000"], "d_model"),
    "huge test size": (["train", "--test-size", "1000000000"], "test_size"),
    "zero threads": (["train", "--threads", "0"], "--threads must be in 1..256"),
    "word threads": (["eval", R, "--threads", "many"], "--threads must be 'auto' or a count"),
    "zero workers": (
        ["sweep", "--mixture", "MAX", "--d-model", "8", "--workers", "-1", "--out", "sw"],
        "0..1,024",
    ),
    "slurm time": (
        ["sweep", "--mixture", "MAX", "--d-model", "8", "--slurm-time", "0", "--out", "sw"],
        "1..43,200",
    ),
    "slurm option, local launcher": (
        ["sweep", "--mixture", "MAX", "--d-model", "8", "--slurm-partition", "gpu", "--out", "sw"],
        "--slurm-partition: only with --launcher slurm",
    ),
    "ray address, slurm launcher": (
        ["reproduce", "--launcher", "slurm", "--address", "h:1", "--out", "sw"],
        "--address: only with --launcher ray",
    ),
    "search options, grid": (
        [
            "sweep",
            "--mixture",
            "MAX",
            "--d-model",
            "8",
            "--search-op",
            "MAX",
            "--search-on",
            "all",
            "--out",
            "sw",
        ],  # fmt: skip
        "--search-op, --search-on: only with --search bisect",
    ),
    # analysis options
    "limit 0": (["ablate", R, "--component", "mlp", "--limit", "0"], "1..1,000,000"),
    "negative top": (["attribute", R, "--top", "-2"], "1..1,000"),
    "one fold": (["probe", R, "--folds", "1"], "2..100"),
    "unknown op": (["geometry", R, "--ops", "FOO"], "unknown operator"),
    "absent op": (["probe", R, "--ops", "SUM", *LIMIT], "no test set for SUM"),
    "negative analysis seed": (["ablate", R, "--component", "mlp", "--seed", "-4"], "0.."),
    # transition
    "bootstrap 0": (["transition", "sw", "--bootstrap", "0"], "1..100,000"),
    "threshold 2": (["transition", "sw", "--threshold", "2"], "0.001..1"),
    "a run, no --out": (["transition", R], "is a run: say where the results go (--out)"),
    "no such sweep": (["transition", "missing"], "no such run or folder"),
    "a device for runs": (["transition", "/dev/null", "--out", "o"], "neither a run nor a folder"),
    "analyse a file": (["analyse", "a_file"], "a_file: is neither a run nor a folder of runs"),
    "report a file": (["report", "a_file", "--out", "r.html"], "is a file, not a run directory"),
    "a folder of no run": (["transition", "a_dir"], "no finished run"),
    "a runs table, no --out": (["transition", "runs.csv"], "is a runs table: say where"),
    "no such runs table": (["transition", "gone.csv", "--out", "o"], "no such runs table"),
    "binary runs table": (["transition", "binary.csv", "--out", "o"], "not a runs table"),
    "table without accuracy": (["transition", "no_accuracy.csv", "--out", "o"], "no column"),
    "table accuracy 1.5": (
        ["transition", "accuracy_1.5.csv", "--out", "o"],
        "accuracy holds 1.5, not an accuracy in [0, 1]",
    ),
    "table size -3": (
        ["transition", "size_-3.csv", "--out", "o"],
        "n_params holds -3, not a whole number >= 0",
    ),
    "table size 0": (["transition", "size_0.csv", "--out", "o"], "n_params holds 0"),
    "table seed a word": (["transition", "seed_word.csv", "--out", "o"], "seed holds 'one'"),
    "table op empty": (["transition", "no_op.csv", "--out", "o"], "op has an empty cell"),
    "table of no runs": (["transition", "header_only.csv", "--out", "o"], "has no runs"),
    "table cut short": (
        ["transition", "cut_short.csv", "--out", "o"],
        "line 3 has 5 of the header's 6 cells",
    ),
    "table accuracy inf": (["transition", "accuracy_inf.csv", "--out", "o"], "holds inf, not an"),
    "table given twice": (["transition", "runs.csv", "runs.csv", "--out", "o"], "given twice"),
    "table at a step": (
        ["transition", "runs.csv", "--at-step", "100", "--out", "o"],
        "a runs table holds the accuracies",
    ),
    # output paths
    "sample into a directory": (["data", "sample", "--n", "3", "--out", "."], "is a directory"),
    "sample under a file": (["data", "sample", "--n", "3", "--out", "a_file/x"], "not a directory"),
    "sample unwritable": (["data", "sample", "--n", "3", "--out", "/proc/x.tsv"], "cannot write"),
    "report into a directory": (["report", R, "--out", "."], "is a directory"),
    "sweep onto a file": (
        ["sweep", "--mixture", "MAX", "--d-model", "8", "--out", "a_file"],
        "is a file",
    ),
    "reproduce onto a file": (["reproduce", "--quick", "--out", "a_file"], "is a file"),
    "train onto a file": (["train", "--out", "a_file"], "not a directory"),
    "sweep seeds backwards": (
        ["sweep", "--mixture", "SUM", "--d-model", "8", "--seeds", "4-2", "--out", "s"],
        "runs backwards",
    ),
    "sweep seeds twice": (
        ["sweep", "--mixture", "SUM", "--d-model", "8", "--seeds", "1,0-2", "--out", "s"],
        "given twice",
    ),
    "train into a run": (["train", "--out", R], "already holds a run"),
    "train into a folder": (["train", "--out", "."], "not empty"),
    "sweep into a folder": (
        ["sweep", "--mixture", "MAX", "--d-model", "8", "--out", "."],
        "not empty and holds no sweep",
    ),
    "train unwritable": (["train", "--out", "/proc/newrun"], "cannot create"),
}

# damaged files: (what to do to the run copy / the directory, command, fragment)
DAMAGE = {
    "corrupt sweep.json": (
        lambda d, r: _sweep_dir(d, "{oops"),
        ["transition", "sw"],
        "corrupted sweep file",
    ),
    "sweep.json of a list": (
        lambda d, r: _sweep_dir(d, "[]"),
        ["transition", "sw"],
        "corrupted sweep file",
    ),
    "sweep.json of the wrong kind": (
        lambda d, r: _sweep_dir(d, '{"mixtures": 3}'),
        ["transition", "sw"],
        "corrupted sweep file",
    ),
    "sweep.json of a billion seeds": (
        lambda d, r: _sweep_seeds(d, r, 10**9),
        ["transition", "sw"],
        "1..1,000 seeds",
    ),
    "sweep.json of seeds that are not numbers": (
        lambda d, r: _sweep_seeds(d, r, [0, "1; rm -rf /"]),
        ["transition", "sw"],
        "seeds must be a number N or a list of whole numbers",
    ),
    "sweep into a sweep of another base": (
        lambda d, r: _sweep_of_run(d, r, (r / "results.json").read_text()),
        ["sweep", "--mixture", "SUM,MAX,MED", "--d-model", "16", "--lr", "0.5", "--out", "sw"],
        "holds a different sweep",
    ),
    "corrupt results.json": (
        lambda d, r: _sweep_of_run(d, r, "{"),
        ["transition", "sw"],
        "corrupted JSON",
    ),
    "results.json without results": (
        lambda d, r: _sweep_of_run(d, r, '{"a": 1}'),
        ["transition", "sw"],
        "not a mechlistops results",
    ),
    "corrupt config.json": (
        lambda d, r: (r / "config.json").write_text("{"),
        ["eval", R],
        "corrupted JSON",
    ),
    "config of a list": (
        lambda d, r: (r / "config.json").write_text("[1]"),
        ["eval", R],
        "not a mechlistops run config",
    ),
    "remote-code tokenizer": (
        lambda d, r: _hostile_tokenizer(d, r),
        ["eval", R],
        "refusing to build it",
    ),
    "config seed negative": (
        lambda d, r: _edit_json(r / "config.json", lambda c: c["train"].update(seed=-1)),
        ["eval", R],
        "seed must be in 0..",
    ),
    "no weights": (
        lambda d, r: (r / "model.safetensors").unlink(),
        ["eval", R],
        "no model.safetensors",
    ),
    "truncated weights": (
        lambda d, r: (r / "model.safetensors").write_bytes(b"\x00" * 12),
        ["eval", R],
        "truncated or not a safetensors",
    ),
    "missing step": (lambda d, r: None, ["eval", R + "@77"], "no checkpoint at step 77"),
    "step that is a word": (lambda d, r: None, ["eval", R + "@last"], "integer step"),
    "symlinked analysis": (
        lambda d, r: (
            shutil.rmtree(r / "analysis", ignore_errors=True),
            (r / "analysis").symlink_to(d / "outside", target_is_directory=True),
            (d / "outside").mkdir(),
        ),
        ["ablate", R, "--component", "mlp", *LIMIT],
        "outside the run",
    ),
}


def _hostile_tokenizer(d: Path, run: Path) -> None:
    """A config naming a local tokenizer folder whose remote code would write d/marker."""
    folder = d / "tok"
    folder.mkdir()
    (folder / "evil.py").write_text(f"open({str(d / 'marker')!r}, 'w').write('ran')\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}})
    )
    _edit_json(
        run / "config.json",
        lambda c: c["hooked_transformer_config"].update(
            tokenizer_name=str(folder), trust_remote_code=True
        ),
    )


def _resume_damage(edit, fragment):
    def setup(d, r):
        (r / "results.json").unlink()  # an interrupted run: its resume state decides
        (r / "model.safetensors").unlink()
        _make_state(r)
        edit(r / "state.safetensors")

    return setup, ["train", "--resume", R], fragment


def _make_state(run: Path) -> None:
    """A genuine resume state at step 100 of the tiny run (as the trainer writes it)."""
    from mechlistops.checkpoint import load_run, save_state
    from mechlistops.train import make_optimizer

    loaded = load_run(f"{run}@100")
    opt = make_optimizer(loaded.model, loaded.config.train)
    loaded.model.train()
    save_state(
        run, loaded.model, opt, 100, {"loss_sum": 0.0, "loss_count": 0, "examples": {"MAX": 6400}}
    )


DAMAGE.update(
    {
        "state not safetensors": _resume_damage(
            lambda p: p.write_text("not json"), "truncated or not a safetensors"
        ),
        "state without param groups": _resume_damage(
            lambda p: _edit_state(p, lambda m: m.pop("param_groups")), "param_groups missing"
        ),
        "state step negative": _resume_damage(
            lambda p: _edit_state(p, lambda m: m.update(step=-5)), "not a step of this run"
        ),
        "state step huge": _resume_damage(
            lambda p: _edit_state(p, lambda m: m.update(step=10**12)), "not a step of this run"
        ),
        "state examples garbage": _resume_damage(
            lambda p: _edit_state(p, lambda m: m.update(examples="many")), "examples malformed"
        ),
        "state loss garbage": _resume_damage(
            lambda p: _edit_state(p, lambda m: m.update(loss_sum="x")), "loss_sum malformed"
        ),
        "state curve garbage": _resume_damage(
            lambda p: _edit_state(p, lambda m: m.update(curve=[[1, "x", 0.5]])), "curve malformed"
        ),
        "state curve hits negative": _resume_damage(
            lambda p: _edit_state(p, lambda m: m.update(curve_hits=-1)), "curve_hits malformed"
        ),
    }
)


@pytest.fixture
def place(tiny_run, tmp_path, monkeypatch):
    """A working directory with a copy of the tiny run and the bad files above."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_run, tmp_path / "run")
    _files(tmp_path)
    return tmp_path


def _check(place, capsys, argv, fragment):
    argv = [a.replace(R, str(place / "run")) for a in argv]
    before = _digest(place)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code != 0, argv
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    assert _digest(place) == before, "a failed command changed files"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_in_one_line_and_changes_nothing(place, capsys, case):
    argv, fragment = CASES[case]
    _check(place, capsys, argv, fragment)


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_files_fail_in_one_line_and_change_nothing(place, capsys, case):
    damage, argv, fragment = DAMAGE[case]
    damage(place, place / "run")
    _check(place, capsys, argv, fragment)
    assert not (place / "marker").exists()  # no code from the run directory ran


def test_stray_files_and_at_signs_in_run_names(place, capsys):
    """A `steps/step_0000100 (copy).safetensors` is not a step; a run whose own name has '@'
    opens as a run."""
    steps = place / "run" / "steps"
    shutil.copy(steps / "step_0000100.safetensors", steps / "step_0000100 (copy).safetensors")
    assert main(["eval", str(place / "run") + "@100"]) == 0
    shutil.copytree(place / "run", place / "r@1")
    assert main(["eval", str(place / "r@1")]) == 0
    assert main(["eval", str(place / "r@1") + "@100"]) == 0
    capsys.readouterr()


def test_garbage_and_truncated_metrics_lines_are_skipped(place, capsys):
    metrics = place / "run" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:2] + ['{"step": 5, "eval": 3}', "garbage", lines[2][:40]]))
    from mechlistops.checkpoint import read_metrics
    from mechlistops.plots import plot_training

    assert [r["step"] for r in read_metrics(place / "run")] == [100, 200]  # evaluations
    assert plot_training(place / "run").is_file()
    metrics.write_text(lines[0][:30])  # only half a line: no evaluations to plot
    with pytest.raises(Exception, match="no evaluations"):
        plot_training(place / "run")


def test_case_count():
    """The table's size, for the record (the closing note quotes it)."""
    assert len(CASES) + len(DAMAGE) >= 50
