# %% [markdown]
# # Stage 2 of the factor screen: SUM's learning transition alone and in SUM+MAX+MED
# Reads a size scan (a sweep of SUM and SUM+MAX+MED over d_model, constant learning rate, read
# at two steps S1 < S2 = 3 x S1) and fits the transition three ways, each with
# `mechlistops.transition.transitions` (N* = smallest size whose median held-out accuracy
# reaches the threshold, and the sigmoid midpoint, with bootstrap intervals over seeds; ratio
# = N*(alone) / N*(joint)):
#   equal SUM examples: alone @S1 against joint @S2;
#   equal steps: alone @S1 against joint @S1, and alone @S2 against joint @S2.
# Run: `python analyses/size_scan.py SCAN_DIR [SCAN_DIR ...] [--s1 6000] [--s2 18000]
# [--out DIR]`; writes scan.md and scan.png into --out (default: the first SCAN_DIR).

# %%
import argparse
from pathlib import Path

import pandas as pd

from mechlistops.analysis.common import script_errors
from mechlistops.plots import plot_transitions
from mechlistops.transition import accuracies_at, transitions

THRESHOLDS = (0.5, 0.9)


def reads(scans: list[Path], s1: int, s2: int) -> dict[str, pd.DataFrame]:
    """SUM's held-out accuracy per run of every scan (sweeps of the same regime over different
    sizes), for each comparison (alone and joint rows)."""
    at = {s: pd.concat([accuracies_at(d, step=s) for d in scans]) for s in (s1, s2)}
    for s, df in at.items():
        at[s] = df[df.op == "SUM"].assign(accuracy=lambda d: d["accuracy_heldout"])

    def pair(alone_step: int, joint_step: int) -> pd.DataFrame:
        alone = at[alone_step][at[alone_step].mixture == "SUM"]
        joint = at[joint_step][at[joint_step].mixture == "SUM+MAX+MED"]
        return pd.concat([alone, joint], ignore_index=True)

    return {
        f"equal SUM examples (alone @{s1}, joint @{s2})": pair(s1, s2),
        f"equal steps @{s1}": pair(s1, s1),
        f"equal steps @{s2}": pair(s2, s2),
    }


def summary(name: str, df: pd.DataFrame, n_boot: int) -> list[str]:
    fits = transitions(df, thresholds=THRESHOLDS, n_boot=n_boot)
    lines = [
        f"**{name}**",
        "",
        "| trained as | sizes x seeds |"
        + "".join(f" N* >= {t} | ratio >= {t} |" for t in THRESHOLDS)
        + " sigmoid midpoint |",
        "|---|---|" + "---|---|" * len(THRESHOLDS) + "---|",
    ]
    for r in fits.to_dict(orient="records"):
        cells = [r["mixture"], str(r["n_runs"])]
        for t in THRESHOLDS:
            n, ci = r[f"smallest_{t}"], r[f"smallest_{t}_ci"]
            cells.append(
                "not reached"
                if n is None or n != n
                else f"{n:,.0f}" + (f" [{ci[0]:,.0f}, {ci[1]:,.0f}]" if ci else "")
            )
            ratio, rci = r[f"ratio_smallest_{t}"], r[f"ratio_smallest_{t}_ci"]
            cells.append(
                ""
                if ratio is None or ratio != ratio
                else f"{ratio:.2f}x" + (f" [{rci[0]:.2f}, {rci[1]:.2f}]" if rci else "")
            )
        mid = r["midpoint"]
        cells.append(r["midpoint_note"] if mid is None or mid != mid else f"{mid:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    accs = df.groupby(["mixture", "n_params"])["accuracy"].apply(
        lambda a: " / ".join(f"{v:.2f}" for v in a)
    )
    lines += ["", "SUM held-out accuracy per seed:", ""]
    lines += [f"- {m}, {n:,} parameters: {v}" for (m, n), v in accs.items()]
    return lines + [""]


# %%
if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("scan", nargs="+", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--s1", type=int, default=6000)
    p.add_argument("--s2", type=int, default=18000)
    p.add_argument("--bootstrap", type=int, default=500)
    args = p.parse_args()
    with script_errors("size_scan"):
        scan = args.out or args.scan[0]
        comparisons = reads(args.scan, args.s1, args.s2)
        scan.mkdir(parents=True, exist_ok=True)
        text = []
        for name, df in comparisons.items():
            text += summary(name, df, args.bootstrap)
        (scan / "scan.md").write_text("\n".join(text))
        print("\n".join(text))
        first = next(iter(comparisons.values()))
        print(
            "saved",
            scan / "scan.md",
            plot_transitions(first, transitions(first, n_boot=20), scan / "scan.png"),
        )
