"""The README's two commands stay in step with CI."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text().splitlines()
    start = text.index("```bash")
    return text[start + 1], text[start + 2]


def test_readme_opens_with_setup_and_test_commands():
    run_cmd, test_cmd = _readme_commands()
    assert run_cmd.endswith("mechlistops train") and "torch==2.13.0" in run_cmd
    assert test_cmd.endswith("pytest") and "torch==2.13.0" in test_cmd


def test_ci_runs_the_readme_test_command():
    _, test_cmd = _readme_commands()
    assert test_cmd in (ROOT / ".ci" / "run").read_text().splitlines()


# The design card's top level, plus what every repository has and the GPU suite's folder.
TOP_LEVEL = {"pyproject.toml", "mechlistops", "analyses", "checkpoints", "tests", "docs"}
TOP_LEVEL |= {"README.md", ".gitignore", ".ci", "benchmarks"}


def test_the_repository_keeps_the_design_cards_top_level():
    """A scratch output committed at the top (it happened once: `b/`) fails here."""
    done = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not done.stdout:
        pytest.skip("not a git checkout")
    tracked = {line.split("/")[0] for line in done.stdout.splitlines()}
    assert tracked <= TOP_LEVEL, sorted(tracked - TOP_LEVEL)
