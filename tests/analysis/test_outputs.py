"""An analysis script's outputs: the rows, the summary and the figure, together or not at all."""

from pathlib import Path

import pandas as pd
import pytest

from mechlistops.analysis.common import save_outputs
from mechlistops.atomic import OutputError


def _plot(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, format="png")
    plt.close(fig)


def test_rows_summary_and_figure_land_side_by_side(tmp_path, capsys):
    rows = pd.DataFrame({"run": ["a", "b"], "heldout": [0.1, 0.9]})
    save_outputs(tmp_path / "out", "scan", rows, "| run |\n", _plot, csv_name="scan_runs")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["scan.md", "scan.png", "scan_runs.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "scan_runs.csv"), rows)
    assert (out / "scan.png").read_bytes()[:4] == b"\x89PNG"
    assert "| run |" in capsys.readouterr().out


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(OutputError, match="taken"):
        save_outputs(tmp_path / "taken", "x", pd.DataFrame(), "", _plot)


def test_a_failing_figure_leaves_no_half_written_file(tmp_path):
    def broken(path):
        Path(path).write_bytes(b"\x89PN")  # cut off
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError):
        save_outputs(tmp_path, "x", pd.DataFrame({"a": [1]}), "", broken)
    assert not (tmp_path / "x.png").exists() and not list(tmp_path.glob(".x.png.*"))
