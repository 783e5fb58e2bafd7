# %% [markdown]
# # Training curves of saved runs
# Per-operator test accuracy against step for each run given on the command line (or every
# finished run under checkpoints/), solid for the whole test set and dashed for the part held
# out of training. Run: `python analyses/training_curves.py checkpoints/<run> [...]`.

# %%
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns

from mechlistops.analysis.common import script_errors
from mechlistops.errors import ConfigError
from mechlistops.plots import metrics_frame

runs = [Path(p) for p in sys.argv[1:]] or sorted(
    p for p in Path("checkpoints").glob("*") if (p / "results.json").exists()
)
with script_errors("training_curves"):
    if not runs:
        raise ConfigError("no finished runs given or found under checkpoints/")
    frames = [metrics_frame(run) for run in runs]
    for run, df in zip(runs, frames):
        if df.empty:
            raise ConfigError(
                f"{run}: no evaluations in its metrics.jsonl (not a run, or none yet)"
            )

# %%
fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False, sharey=True)
for ax, run, df in zip(axes[0], runs, frames):
    sns.lineplot(df, x="step", y="accuracy", hue="set", ax=ax)
    sns.lineplot(df, x="step", y="accuracy_heldout", hue="set", ax=ax, linestyle="--", legend=False)
    ax.set(title=run.name, ylim=(0, 1.02))
fig.tight_layout()
out = Path("training_curves.png")
fig.savefig(out, dpi=110)
print(f"wrote {out}")
