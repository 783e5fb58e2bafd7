"""Download the wheels the GPU machine lacks, for its Python and platform, into wheels/.

The GPU machine has PyTorch, numpy, einops, jaxtyping, safetensors, scikit-learn, seaborn and
pandas (and their dependencies), Python 3.12, and no network. mechlistops also needs
transformer-lens and circuitsvis. This script finds every distribution that importing
mechlistops (and TransformerLens, circuitsvis) loads here, drops those the GPU machine has,
and downloads the rest, at the versions installed here, as binary wheels for CPython 3.12 on
manylinux x86_64, without dependencies (the list is already the closure). `wheels/` is
git-ignored and travels with the working tree (the device tool's `carry`);
`benchmarks/gpu_suite.py` installs from it first.

    python benchmarks/fetch_wheels.py [--dest wheels] [--python 3.12]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# On the GPU machine already (as its description says), with what they pull in.
PRESENT = {
    "torch",
    "numpy",
    "einops",
    "jaxtyping",
    "safetensors",
    "scikit-learn",
    "scipy",
    "joblib",
    "threadpoolctl",
    "seaborn",
    "matplotlib",
    "pandas",
    "python-dateutil",
    "pytz",
    "tzdata",
    "six",
    "pillow",
    "contourpy",
    "cycler",
    "fonttools",
    "kiwisolver",
    "pyparsing",
    "packaging",
    "filelock",
    "jinja2",
    "markupsafe",
    "sympy",
    "mpmath",
    "networkx",
    "fsspec",
    "typing-extensions",
    "setuptools",
    "triton",
    "wadler-lindig",
}
NOT_NEEDED = {"mechlistops", "pytest", "iniconfig", "pluggy", "pip"}  # tests, this project
# Hugging Face datasets and what it alone pulls in (pyarrow is 55 MB): TransformerLens imports
# it but mechlistops never uses it; mechlistops/tl.py stands in for it where it is missing.
DATASETS = {"datasets", "pyarrow", "dill", "multiprocess", "xxhash"}


def loaded_distributions() -> dict[str, str]:
    """{distribution: version} of everything importing mechlistops and its analyses loads."""
    code = (
        "import sys, json, importlib.metadata as md\n"
        "import transformer_lens, circuitsvis\n"
        "import mechlistops.cli, mechlistops.report, mechlistops.analysis.views\n"
        "pd = md.packages_distributions()\n"
        "names = {d for m in list(sys.modules) for d in pd.get(m.split('.')[0], [])}\n"
        "print(json.dumps({n: md.version(n) for n in names}))\n"
    )
    import json

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def needed(loaded: dict[str, str]) -> dict[str, str]:
    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    return {
        n: v for n, v in sorted(loaded.items()) if norm(n) not in PRESENT | NOT_NEEDED | DATASETS
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, default=Path("wheels"))
    p.add_argument("--python", default="3.12")
    args = p.parse_args()
    wanted = needed(loaded_distributions())
    args.dest.mkdir(parents=True, exist_ok=True)
    specs = [f"{n}=={v}" for n, v in wanted.items()]
    print(f"downloading {len(specs)} wheels: {', '.join(specs)}")
    platforms = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        args.python,
        "--implementation",
        "cp",
        "--dest",
        str(args.dest),
    ]
    for plat in platforms:
        cmd += ["--platform", plat]
    subprocess.run(cmd + specs, check=True)
    size = sum(f.stat().st_size for f in args.dest.glob("*.whl"))
    print(f"{len(list(args.dest.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {args.dest}")


if __name__ == "__main__":
    main()
