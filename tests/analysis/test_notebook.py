"""The notebook in analyses/ runs top to bottom on a tiny run, with offline attention views."""

import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "analyses" / "inspect_run.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_executes_offline(tiny_run, monkeypatch):
    monkeypatch.setenv("MECHLISTOPS_RUN", str(tiny_run))
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute(env=dict(os.environ))
    html = [
        out["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "text/html" in out.get("data", {})
    ]
    views = [h for h in html if "CircuitsVis.render" in h]
    assert len(views) == 3  # MAX and the mixture, then the expression of one's own
    mine = [
        out["text"]
        for cell in nb.cells
        if cell.cell_type == "code" and "EXPR" in cell.source
        for out in cell.outputs
        if out.output_type == "stream"
    ]
    assert mine and mine[0].startswith("[MAX 3 [MIN 4 9 ] 2 ] = 4 | model: ")
    for h in views:
        assert "var CircuitsVis=" in h and "unpkg.com" not in h  # the bundle is inline
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors
