# %% [markdown]
# # SUM alone, within SUM+MAX+MED, and after MAX+MED pretraining, at a CPU-sized scale
# Claims 2 and 6 of ../shared/PAPER.md with more steps than `mechlistops reproduce --quick`
# affords, on fewer settings: SUM alone, SUM in SUM+MAX+MED (single-operator trees), and SUM
# after MAX+MED pretraining, at d_model 16-64, 2 seeds, 6,000 steps each (the curriculum:
# 6,000 MAX+MED steps, then 6,000 SUM steps). It uses the reproduction's machinery, so the
# output is the same layout and summary (docs/reproduction.md reports what it gave).
# Run: `python analyses/sum_transition_cpu.py [OUT]` (default sweeps/sum-transition-cpu);
# about 50 minutes on 2 CPU cores; rerunning resumes.

# %%
import sys
from pathlib import Path

from mechlistops.reproduce import Scale, describe, run

scale = Scale(
    "SUM-only CPU",
    d_models=(16, 24, 32, 48, 64),
    seeds=2,
    steps=6000,
    joint=(("SUM", "MAX", "MED"),),
    single=(("SUM",),),
    note="Claims 2 and 6 only (analyses/sum_transition_cpu.py).",
)
out = Path(sys.argv[1] if len(sys.argv) > 1 else "sweeps/sum-transition-cpu")
print(describe(scale), flush=True)

# %%
files = run(scale, out, progress=False)
print(files["summary"].read_text())
print("saved " + ", ".join(str(p) for p in files.values()))
