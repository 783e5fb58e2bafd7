# %% [markdown]
# # SUM alone, within SUM+MAX+MED, and after MAX+MED pretraining, at a CPU-sized scale
# Claims 2 and 6 of ../shared/PAPER.md with more steps than `mechlistops reproduce --quick`
# affords, on fewer settings: SUM alone, SUM in SUM+MAX+MED (single-operator trees), and SUM
# after MAX+MED pretraining; 2 seeds, 6,000 steps each (the curriculum: 6,000 MAX+MED steps,
# then 6,000 SUM steps). Two studies through the reproduction's machinery, d_model 16-64
# under OUT/d16-64 and d_model 4-12 under OUT/d4-12, then one summary over both in OUT
# (docs/reproduction.md reports what it gave).
# Run: `python analyses/sum_transition_cpu.py [OUT]` (default sweeps/sum-transition-cpu);
# about 75 minutes on 2 CPU cores; rerunning resumes.

# %%
import dataclasses
import sys
from pathlib import Path

import pandas as pd

from mechlistops.analysis.common import script_errors
from mechlistops.errors import ConfigError
from mechlistops.reproduce import Scale, collect_all, describe, run, write_summary

large = Scale(
    "SUM-only CPU",
    d_models=(16, 24, 32, 48, 64),
    seeds=2,
    steps=6000,
    joint=(("SUM", "MAX", "MED"),),
    single=(("SUM",),),
    note="Claims 2 and 6 only (analyses/sum_transition_cpu.py).",
)
small = dataclasses.replace(large, d_models=(4, 8, 12))
both = dataclasses.replace(large, d_models=small.d_models + large.d_models)

# %%
# The guard: the sweep's worker processes are spawned and import this file again.
if __name__ == "__main__":
    with script_errors("sum_transition_cpu"):
        if len(sys.argv) > 2:
            raise ConfigError(f"one argument, OUT; got {len(sys.argv) - 1}")
        out = Path(sys.argv[1] if len(sys.argv) > 1 else "sweeps/sum-transition-cpu")
        print(describe(both), flush=True)
        studies = {"d16-64": large, "d4-12": small}
        for name, scale in studies.items():
            run(scale, out / name, progress=False)
        df = pd.concat([collect_all(out / name) for name in studies], ignore_index=True)
        files = write_summary(both, out, df=df)
        print(files["summary"].read_text())
        print("saved " + ", ".join(str(p) for p in files.values()))
