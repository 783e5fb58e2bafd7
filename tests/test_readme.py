"""The README's two commands stay in step with CI."""

from pathlib import Path

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
