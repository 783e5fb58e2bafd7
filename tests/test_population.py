"""Analyses of a whole population: aggregation with known medians and intervals, the cache,
the filters, skips, folders of runs, and the command line."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mechlistops.cli import main
from mechlistops.errors import ConfigError
from mechlistops.population import (
    Settings,
    aggregate,
    analyse_runs,
    bootstrap_median,
    member_metrics,
    split_at,
)
from mechlistops.sweep import SweepConfig, run_sweep
from tests.conftest import tiny_config


def test_bootstrap_median_on_known_values():
    median, low, high = bootstrap_median(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), n_boot=2000)
    assert median == 3.0
    assert 1.0 <= low <= 3.0 <= high <= 100.0
    assert bootstrap_median(np.array([0.5, 0.5, 0.5]))[1:] == (0.5, 0.5)  # no spread
    m, lo, hi = bootstrap_median(np.array([0.7]))
    assert m == 0.7 and np.isnan(lo) and np.isnan(hi)  # one seed: no interval
    assert np.isnan(bootstrap_median(np.array([np.nan]))[0])


def test_aggregate_fabricated_runs():
    rows = []
    for mixture, offset in (("SUM", 0.0), ("SUM+MAX+MED", 0.5)):
        for data, shift in (("12,500 sampled", 0.0), ("fresh stream", 0.05)):
            for n_params, d in ((1000, 8), (4000, 16)):
                for seed, v in enumerate((0.1, 0.2, 0.3)):
                    rows.append(
                        {
                            "member": f"{mixture}{data}{d}{seed}",
                            "mixture": mixture,
                            "data": data,
                            "d_model": d,
                            "seed": seed,
                            "n_params": n_params,
                            "metric": "W_E ordering",
                            "value": v + offset + shift,
                        }
                    )
    table = aggregate(pd.DataFrame(rows), n_boot=500)
    assert len(table) == 8 and set(table.seeds) == {3}  # training data never pooled
    cell = table[(table.mixture == "SUM+MAX+MED") & (table.n_params == 1000)].set_index("data")
    assert cell.loc["12,500 sampled", "median"] == pytest.approx(0.7)
    assert cell.loc["fresh stream", "median"] == pytest.approx(0.75)
    joint = cell.loc["12,500 sampled"]
    assert 0.6 - 1e-9 <= joint.ci_low <= 0.7 <= joint.ci_high <= 0.8 + 1e-9


def test_split_at_separates_the_runs_that_learned_the_target():
    df = pd.DataFrame(
        {
            "mixture": ["SUM", "SUM", "SUM+MAX+MED", "MAX"],
            "heldout": [0.95, 0.3, 0.9, float("nan")],  # MAX: does not train SUM
        }
    )
    assert split_at(df, 0.9).mixture.tolist() == [
        "SUM, SUM held-out >= 0.9",
        "SUM, SUM held-out < 0.9",
        "SUM+MAX+MED, SUM held-out >= 0.9",
        "MAX",
    ]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """Two mixtures x one size x 2 seeds of tiny runs, one member left unfinished."""
    out = tmp_path_factory.mktemp("pop") / "sw"
    base = tiny_config(data={"ops": ("MAX",)}, train={"steps": 60, "eval_interval": 60})
    sweep = SweepConfig((("MAX",), ("MAX", "MIN")), (16,), 2, base)
    run_sweep(sweep, out, workers=1, progress=False)
    (out / "max+min_d16_s1" / "results.json").unlink()  # as if still training
    return out


def test_analyse_sweep_caches_filters_and_skips(sweep_dir):
    df = analyse_runs([sweep_dir], ("geometry", "ablate"), workers=1, progress=False)
    assert df.attrs["skipped"] == ["max+min_d16_s1"] and not df.attrs["failed"]
    assert set(df.member) == {"max_d16_s0", "max_d16_s1", "max+min_d16_s0"}
    metrics = set(df.metric)
    assert "W_E ordering minus random init" in metrics
    assert not any("drop" in m for m in metrics)  # no SUM in these mixtures: a stated skip
    cache = sweep_dir / "max_d16_s0" / "analysis" / "population.json"
    stamp = cache.stat().st_mtime_ns
    again = member_metrics(sweep_dir / "max_d16_s0", ("geometry",))
    assert cache.stat().st_mtime_ns == stamp  # served from the cache
    first = df[(df.member == "max_d16_s0")].set_index("metric")["value"]
    assert all(first[k] == v for k, v in again.items())
    only = analyse_runs([sweep_dir], ("geometry",), mixtures=("MAX",), workers=1, progress=False)
    assert set(only.mixture) == {"MAX"} and set(only.data) == {"fresh stream, depth 2"}
    assert only.heldout.isna().all()  # the target, SUM, is not trained: no accuracy to read
    on_max = analyse_runs(
        [sweep_dir], ("geometry",), Settings(target="MAX"), workers=1, progress=False
    )
    result = json.loads((sweep_dir / "max_d16_s0" / "results.json").read_text())
    first = on_max[on_max.member == "max_d16_s0"].heldout
    assert (first == result["results"]["MAX"]["accuracy_heldout"]).all()
    with pytest.raises(ConfigError, match="no finished member matches"):
        analyse_runs([sweep_dir], ("geometry",), d_models=(99,), progress=False)
    with pytest.raises(ConfigError, match="analyses must be"):
        analyse_runs([sweep_dir], ("magic",), progress=False)


def test_analyse_runs_trained_one_by_one_into_folders(sweep_dir, tmp_path):
    """A scan kept as scan/alone/RUN and scan/joint/RUN, given beside a sweep: every finished
    run read (the cache of the sweep's members serves the copies), named by its path."""
    import shutil

    scan = tmp_path / "scan"
    shutil.copytree(sweep_dir / "max_d16_s0", scan / "alone" / "max_d16_s0")
    shutil.copytree(sweep_dir / "max+min_d16_s0", scan / "joint" / "max+min_d16_s0")
    shutil.copytree(sweep_dir / "max+min_d16_s1", scan / "joint" / "unfinished")
    df = analyse_runs([scan], ("geometry",), workers=1, progress=False)
    assert set(df.member) == {"alone/max_d16_s0", "joint/max+min_d16_s0"}
    both = analyse_runs([scan, sweep_dir], ("geometry",), workers=1, progress=False)
    assert {"scan/alone/max_d16_s0", "sw/max_d16_s1"} <= set(both.member)
    assert both.attrs["skipped"] == ["sw/max+min_d16_s1"]
    with pytest.raises(ConfigError, match="has not finished"):
        analyse_runs([scan / "joint" / "unfinished"], ("geometry",), progress=False)


def test_ablation_drops_for_the_target_operator(sweep_dir):
    got = member_metrics(sweep_dir / "max_d16_s0", ("ablate",), Settings(target="MAX"))
    assert set(got) == {
        "MAX accuracy drop, MLPs mean-ablated",
        "MAX accuracy drop, attention mean-ablated",
    }
    assert all(-1.0 <= v <= 1.0 for v in got.values())


def test_analyse_cli(sweep_dir, tmp_path, capsys):
    code = main(
        [
            "analyse",
            str(sweep_dir),
            "--analyses",
            "geometry,attribute",
            "--workers",
            "1",
            "--bootstrap",
            "50",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "skipped max+min_d16_s1" in out and "W_E ordering" in out
    assert "[no interval]  (1 seed)" in out  # MAX+MIN at d_model 16: one seed finished
    table = json.loads((tmp_path / "analysis.json").read_text())
    assert {r["mixture"] for r in table} == {"MAX", "MAX+MIN"}
    assert (tmp_path / "analysis.csv").is_file()
    assert list((tmp_path / "analysis").glob("*.png"))
    for argv, fragment in (
        (["analyse", str(tmp_path)], "no finished run"),
        (["analyse", str(tmp_path / "missing")], "no such run or folder"),
        (["analyse", str(sweep_dir), str(sweep_dir)], "say where the table goes (--out)"),
        (["analyse", str(sweep_dir), "--analyses", "magic"], "unknown analysis 'magic'"),
        (["analyse", str(sweep_dir), "--d-model", "99"], "no finished member matches"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and fragment in err, err


def test_ablation_on_the_pool_needs_a_pool(sweep_dir):
    with pytest.raises(ConfigError, match="no MAX pool"):
        member_metrics(
            sweep_dir / "max_d16_s1", ("ablate",), Settings(target="MAX", ablate_on="pool")
        )
    with pytest.raises(ConfigError, match="ablate_on"):
        Settings(ablate_on="train")


def test_analyses_across_training_at_every_saved_step(tiny_run, tmp_path, capsys):
    import shutil

    from mechlistops.checkpoint import saved_steps
    from mechlistops.population import analyse_steps

    tiny_run = Path(
        shutil.copytree(tiny_run, tmp_path / "run")
    )  # outputs stay out of the shared run

    steps = saved_steps(tiny_run)
    assert steps[:4] == [0, 1, 2, 4] and steps[-1] == 300
    df = analyse_steps(tiny_run, [0, 100, 300], ("attribute",), Settings(limit=60), workers=1)
    assert sorted(df.step.unique()) == [0, 100, 300] and not df.attrs["failed"]
    ratio = df[df.metric == "attention / MLP usage at the answer"].set_index("step").value
    # the same number as the analysis of that step alone, read from its own cache
    alone = member_metrics(f"{tiny_run}@100", ("attribute",), Settings(limit=60))
    assert ratio[100] == alone["attention / MLP usage at the answer"]
    assert ratio[0] != ratio[300]  # training changes it
    assert (tiny_run / "analysis" / "population_step100.json").is_file()
    with pytest.raises(ConfigError, match="no snapshot at step 7"):
        analyse_steps(tiny_run, [7], ("attribute",), workers=1)
    args = ["steps", str(tiny_run), "--steps", "0,300", "--analyses", "attribute"]
    assert main([*args, "--limit", "60", "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "attention / MLP usage at the answer" in out and "0: " in out
    assert (tiny_run / "analysis" / "steps.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["steps", f"{tiny_run}@100"]) == 2
    assert main(["steps", str(tiny_run), "--steps", "x"]) == 2
    empty = tmp_path / "nosteps"
    shutil.copytree(tiny_run, empty)
    shutil.rmtree(empty / "steps")
    assert main(["steps", str(empty), "--no-progress"]) == 2
    assert "no saved steps" in capsys.readouterr().err


def test_report_of_a_folder_of_runs_split_at_the_target(sweep_dir, tmp_path, capsys):
    """Runs trained one by one into folders make a population section as a sweep does;
    --split-at splits each mixture by SUM's held-out accuracy."""
    import shutil

    scan = tmp_path / "scan"
    shutil.copytree(sweep_dir / "max_d16_s0", scan / "alone" / "max_d16_s0")
    shutil.copytree(sweep_dir / "max+min_d16_s0", scan / "joint" / "max+min_d16_s0")
    # this copy's results say it learned SUM (held-out 0.95), so that the split has a side
    results = scan / "alone" / "max_d16_s0" / "results.json"
    doc = json.loads(results.read_text())
    doc["results"]["SUM"] = {**doc["results"]["MAX"], "accuracy_heldout": 0.95}
    results.write_text(json.dumps(doc))
    out = tmp_path / "report.html"
    argv = ["report", str(scan), "--out", str(out), "--workers", "1", "--split-at", "0.9"]
    assert main(argv) == 0
    assert "runs:" not in capsys.readouterr().err  # no runs given: no empty progress bar
    page = out.read_text()
    assert f"Population: {scan}" in page and "CircuitsVis" not in page
    table = json.loads((scan / "analysis.json").read_text())
    assert {r["mixture"] for r in table} == {"MAX, SUM held-out >= 0.9", "MAX+MIN"}
    assert "MAX, SUM held-out &gt;= 0.9" in page
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    for argv, fragment in (
        (["report", str(empty), "--out", str(out)], "no finished run"),
        (["report", str(scan), "--split-at", "2", "--out", str(out)], "--split-at"),
        (["report", str(tmp_path / "missing"), "--out", str(out)], "missing"),
    ):
        stamp = out.stat().st_mtime_ns
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and fragment in err, err
        assert out.stat().st_mtime_ns == stamp  # the page given is left as it was


def test_log_spaced_snapshots():
    from mechlistops.config import TrainConfig
    from mechlistops.train import snapshot_steps

    t = TrainConfig(steps=6000, save_interval=6000, log_checkpoints=False, log_snapshots=40)
    steps = sorted(snapshot_steps(t))
    assert 30 <= len(steps) <= 41 and steps[:3] == [0, 1, 2] and steps[-1] == 6000
    gaps = np.diff(np.log(steps[1:]))
    assert gaps.max() < 3 * gaps.mean()  # evenly spaced in log(step), up to rounding
    with pytest.raises(ConfigError, match="log_snapshots"):
        TrainConfig(log_snapshots=-1)


def test_report_of_a_sweep_shows_its_population(sweep_dir, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(sweep_dir), "--out", str(out), "--workers", "1"]) == 0
    page = out.read_text()
    assert f"Population: {sweep_dir}" in page
    assert "max+min_d16_s1: not finished, skipped" in page
    metrics = {r["metric"] for r in json.loads((sweep_dir / "analysis.json").read_text())}
    assert "W_E ordering minus random init" in metrics
    assert all(m in page for m in metrics)  # the table's columns
    # a figure per metric, and the transitions' first
    assert page.count("data:image/png;base64,") == len(metrics) + 1
    assert (sweep_dir / "analysis" / "transitions_heldout.png").is_file()
    assert "alone / here (0.9)" in page and "fewer than 4 sizes" in page  # the N* table
    assert "alone / here, crossing (0.9)" in page and "crosses (0.5)" in page
    # the cells behind them: per size, the median and the runs reaching each threshold
    from mechlistops.report import size_cells
    from mechlistops.transition import accuracies_at

    accuracy = accuracies_at(sweep_dir).assign(accuracy=lambda d: d.accuracy_heldout)
    cells = size_cells(accuracy)
    alone = accuracy[(accuracy.op == "MAX") & (accuracy.mixture == "MAX")]
    assert len(alone) == 2  # both seeds
    for size, g in alone.groupby("n_params"):
        at = [f"{(g.accuracy >= t).sum()} of {len(g)} at {t}" for t in (0.5, 0.9)]
        text = f"{g.accuracy.median():.2f} ({', '.join(at)})"
        assert cells.loc[("MAX", "MAX"), f"{size:,}"] == text
        value, _, rest = text.partition(" (")
        assert f"{value}<br>({rest}" in page  # as the page shows it, the counts below
    assert "CircuitsVis" not in page  # no runs given: no attention views
    from tests.test_report_render import CHROMIUM, rendered

    if CHROMIUM:  # as a browser shows it (tests/test_report_render.py)
        check = rendered(out)
        assert check["errors"] == [] and len(check["images"]) == len(metrics) + 1
        assert all(w > 100 and h > 100 for w, h in check["images"])
        assert check["width"] <= check["viewport"] + 1  # the table fits the window


@pytest.mark.parametrize("datas", [1, 2])
def test_metric_figure_keeps_a_long_metric_name_inside_the_figure(datas):
    """The y label of the longest metric the analyses write (attention's share of the direct
    logit attribution) once ran off the top of the figure; wrapped, it fits, and the legend
    under the axes stays on the page, with series named by mixture and training data too."""
    import matplotlib.pyplot as plt

    from mechlistops.population import metric_figure

    metric = "attention share of the direct logit attribution"
    rows = [
        {
            "mixture": mixture,
            "data": f"{data} sampled, mod 11, 3 operands",
            "n_params": n_params,
            "d_model": d_model,
            "seed": seed,
            "metric": metric,
            "value": 0.1 * (seed + 1),
        }
        for mixture in ("SUM, SUM held-out >= 0.9", "SUM+MAX+MED, SUM held-out >= 0.9")
        for data in ("20,000", "12,500")[:datas]
        for n_params, d_model in ((1718, 8), (3142, 12))
        for seed in (0, 1)
    ]
    df = pd.DataFrame(rows)
    fig = metric_figure(df, aggregate(df, n_boot=100), metric)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    label = fig.axes[0].yaxis.label.get_window_extent(renderer)
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    xlabel = fig.axes[0].xaxis.label.get_window_extent(renderer)
    page = fig.bbox
    plt.close(fig)
    assert page.y0 <= label.y0 and label.y1 <= page.y1
    assert page.x0 <= label.x0
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0
    assert legend.y1 <= xlabel.y0  # under the axis label, not over it
