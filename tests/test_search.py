"""The adaptive transition search: bisection on synthetic accuracy functions (monotone, none
or all passing, not monotone), and a real tiny search whose members `transition` reads."""

from __future__ import annotations

import json
import math

import pytest

from mechlistops.cli import main
from mechlistops.search import bisect_sizes


def _calls(pattern: str):
    """passes(i) from a string like 'FFTTT', counting the calls."""
    calls = []

    def passes(i: int) -> bool:
        calls.append(i)
        return pattern[i] == "T"

    return passes, calls


@pytest.mark.parametrize("n", [1, 2, 5, 10, 17])
def test_bisection_finds_every_monotone_boundary_in_log_runs(n):
    for boundary in range(n + 1):
        passes, calls = _calls("F" * boundary + "T" * (n - boundary))
        found = bisect_sizes(n, passes)
        assert found.boundary == (boundary if boundary < n else None)
        assert found.monotone
        assert len(calls) == len(set(calls))  # no size trained twice
        assert len(calls) <= math.ceil(math.log2(n + 1)) + 1


def test_a_ten_size_grid_needs_about_four_runs():
    passes, calls = _calls("FFFFFFTTTT")
    assert bisect_sizes(10, passes).boundary == 6 and len(calls) <= 5


@pytest.mark.parametrize(
    "pattern, boundary",
    [
        ("FTFTTTT", 1),  # the bisection lands on a lone pass; the size above it fails
        ("FFFTFTT", 3),  # the size above the boundary fails
    ],
)
def test_non_monotone_accuracy_is_flagged_when_seen(pattern, boundary):
    passes, calls = _calls(pattern)
    found = bisect_sizes(len(pattern), passes)
    seen = {i: pattern[i] == "T" for i in calls}
    edge = found.boundary if found.boundary is not None else len(pattern)
    assert found.monotone == all(ok == (i >= edge) for i, ok in seen.items())
    assert found.boundary == boundary
    assert not found.monotone


def test_a_real_search_trains_few_sizes_and_transition_reads_them(tmp_path, capsys):
    out = tmp_path / "search"
    argv = ["sweep", "--mixture", "MAX", "--d-model", "4,8,16,32", "--seeds", "1"]
    argv += ["--n-layers", "1", "--n-heads", "2", "--steps", "150", "--eval-interval", "150"]
    argv += ["--save-interval", "150", "--test-size", "200", "--max-depth", "2"]
    argv += ["--search", "bisect", "--search-threshold", "0.8", "--workers", "1"]
    argv += ["--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "search.json").read_text())["searches"]
    assert len(saved) == 1 and saved[0]["op"] == "MAX"
    trained = sorted(int(p.name.split("_d")[1].split("_")[0]) for p in out.glob("max_d*"))
    assert len(trained) == saved[0]["runs"] <= 3  # of 4 sizes, whatever the boundary
    assert [int(d) for d in saved[0]["accuracies"]] == trained
    assert "runs instead of the grid's 4" in printed
    assert main(["transition", str(out), "--bootstrap", "5"]) == 0
    assert main(argv) == 0  # rerun: every size it needs is already trained
    assert json.loads((out / "search.json").read_text())["searches"] == saved


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--search-threshold", "0"], "expected 0.001..1"),
        (["--search-op", "SUM"], "not in the mixture"),
        (["--launcher", "ray"], "runs on this machine"),
    ],
)
def test_bad_search_options_fail_in_one_line(tmp_path, capsys, extra, fragment):
    argv = ["sweep", "--mixture", "MAX", "--d-model", "4,8", "--seeds", "1", "--search", "bisect"]
    assert main([*argv, "--out", str(tmp_path / "s"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
