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

from mechlistops.plots import metrics_frame

runs = [Path(p) for p in sys.argv[1:]] or sorted(
    p for p in Path("checkpoints").glob("*") if (p / "results.json").exists()
)
if not runs:
    sys.exit("no finished runs given or found under checkpoints/")

# %%
fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False, sharey=True)
for ax, run in zip(axes[0], runs):
    df = metrics_frame(run)
    sns.lineplot(df, x="step", y="accuracy", hue="set", ax=ax)
    sns.lineplot(df, x="step", y="accuracy_heldout", hue="set", ax=ax, linestyle="--", legend=False)
    ax.set(title=run.name, ylim=(0, 1.02))
fig.tight_layout()
out = Path("training_curves.png")
fig.savefig(out, dpi=110)
print(f"wrote {out}")
