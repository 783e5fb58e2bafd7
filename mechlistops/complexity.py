"""A task-complexity proxy: the gzip size of a minimal solver, a rough stand-in for Kolmogorov
complexity (the first version of the paper related each task's learning transition to it).

The rules, fixed so that sizes compare:
- every solver runs on one shared parser stub (`STUB`): it reads a bracketed expression and
  calls the function named after each operator on the list of its operand values, and `V` on
  each value token;
- a solver is the definitions it needs, each written once (`PARTS`): the family's prelude (its
  constant and `V`), shared helpers (composition `C`, the element list `E`), then one function
  per operator, named after it, taking the operand list `a`; no imports, no comments, one space
  of indentation;
- a mixture's solver is the ordered union of its operators' parts, so shared helpers count once;
- the proxy is len(gzip(stub + solver, level 9)) - len(gzip(stub, level 9)), in bytes.

Tables that depend on the data seed (the SSUM and SPRD relabellings) are written out as literals
for the task's seed: a shuffled table costs what it costs to write down. The tests run every
solver against the task's evaluator, so each proxy is the size of a solver that works.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mechlistops.config import DataConfig
from mechlistops.errors import ConfigError
from mechlistops.listops import ssum_permutation

STUB = """def S(t):
 w=t.split();i=0
 def e():
  nonlocal i
  x=w[i];i+=1
  if x[0]=='[':
   a=[]
   while w[i]!=']':a.append(e())
   i+=1
   return globals()[x[1:]](a)
  return V(x)
 return e()
"""


def _parts(cfg: DataConfig) -> dict[str, tuple[tuple[str, ...], str]]:
    """name -> (the parts it needs, its source): every definition a solver may use."""
    n, k = cfg.modulus, cfg.group_k
    relabel = ssum_permutation(cfg.n_values, cfg.seed).tolist()
    even = "(s[k//2-1]+s[k//2])//2" if cfg.median == "listops" else "s[k//2-1]"
    return {
        # listops
        "N": ((), f"N={n}\nV=int\n"),
        "MAX": (("N",), "def MAX(a):return max(a)\n"),
        "MIN": (("N",), "def MIN(a):return min(a)\n"),
        "MED": (
            ("N",),
            f"def MED(a):\n s=sorted(a);k=len(s)\n return s[k//2] if k%2 else {even}\n",
        ),
        "SUM": (("N",), "def SUM(a):return sum(a)%N\n"),
        "PROD": (("N",), "def PROD(a):\n r=1\n for x in a:r=r*x%N\n return r\n"),
        "NADD": (("N",), "def NADD(a):return sum(x*(-1)**i for i,x in enumerate(a))%N\n"),
        "SSUM": (("N",), f"P={relabel}\ndef SSUM(a):return P[sum(P.index(x) for x in a)%N]\n"),
        # perm: elements are tuples of images, composed right to left
        "K": ((), f"K={k}\ndef V(w):return tuple(map(int,w))\n"),
        "C": (("K",), "def C(p,q):return tuple(p[x] for x in q)\n"),
        "R": (("K",), "def R(j):return tuple((i+j)%K for i in range(K))\n"),
        "E": (
            ("K",),
            "def G(s):return [(x,)+r for x in s for r in G([y for y in s if y!=x])] if s "
            "else [()]\nE=G(list(range(K)))\n",
        ),
        "PRD": (("K", "C"), "def PRD(a):\n r=a[0]\n for x in a[1:]:r=C(r,x)\n return r\n"),
        "SGN": (
            ("K",),
            "def SGN(a):\n s=sum(p[j]>p[i] for p in a for i in range(K) for j in range(i))%2\n"
            " return (1,0)+tuple(range(2,K)) if s else tuple(range(K))\n",
        ),
        "PNT": (("K", "R"), "def PNT(a):\n j=0\n for p in a[::-1]:j=p[j]\n return R(j)\n"),
        "CYC": (("K", "R"), "def CYC(a):return R(sum(p[0] for p in a)%K)\n"),
        "BLK": (("K", "C"), "def BLK(a):\n r=a[0]\n for x in a[1:]:r=C(r,x)\n return r\n"),
        "SPRD": (
            ("K", "C", "E"),
            f"P={relabel}\ndef SPRD(a):\n r=tuple(range(K))\n"
            " for x in a:r=C(r,E[P.index(E.index(x))])\n return E[P[E.index(r)]]\n",
        ),
    }


def solver(cfg: DataConfig, ops: tuple[str, ...] | None = None) -> str:
    """The minimal solver of a mixture (the config's operators unless `ops`), without the stub."""
    parts, seen, out = _parts(cfg), set(), []

    def add(name: str) -> None:
        if name in seen:
            return
        needs, source = parts[name]
        for dep in needs:
            add(dep)
        seen.add(name)
        out.append(source)

    for op in ops or cfg.ops:
        if op not in parts:
            raise ConfigError(f"no solver written for operator {op!r}")
        add(op)
    return "".join(out)


def _gzip_size(text: str) -> int:
    return len(gzip.compress(text.encode(), compresslevel=9, mtime=0))


def proxy(cfg: DataConfig, ops: tuple[str, ...] | None = None) -> int:
    """gzip size (level 9) of stub + solver, minus the stub's, in bytes."""
    return _gzip_size(STUB + solver(cfg, ops)) - _gzip_size(STUB)


@dataclass
class PowerLaw:
    """log N* = log a + b log proxy, least squares in natural logs."""

    a: float
    b: float
    b_ci: tuple[float, float] | None  # 95% t interval of the exponent; None with < 3 points
    n: int  # points that carry the fit

    def describe(self) -> str:
        band = f" [{self.b_ci[0]:.2f}, {self.b_ci[1]:.2f}]" if self.b_ci else " (no interval)"
        return f"N* ~ {self.a:.3g} * proxy^{self.b:.2f}{band} over {self.n} tasks"


def fit_power_law(proxies, n_stars) -> PowerLaw:
    """Fit log N* against log proxy. The interval is the 95% t interval of the slope; with n
    points it has n - 2 degrees of freedom, so 3 points give a very wide one."""
    from scipy import stats

    x, y = np.log(np.asarray(proxies, float)), np.log(np.asarray(n_stars, float))
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ConfigError(
            f"a power law needs at least 2 tasks with different proxies and a transition; "
            f"got {len(x)}"
        )
    fit = stats.linregress(x, y)
    ci = None
    if len(x) >= 3:
        half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
        ci = (float(fit.slope - half), float(fit.slope + half)) if math.isfinite(half) else None
    return PowerLaw(float(math.exp(fit.intercept)), float(fit.slope), ci, len(x))


def transition_points(sweeps, fits, key: str = "smallest_0.9"):
    """The tasks of a transitions table (of one sweep, or of several sweeps read together)
    with the proxy of what each trained on.

    One row per (op, mixture) of `fits` (transition.transitions), curricula left out: task
    (the mixture), op, proxy (of the mixture: the task the model learned), n_star (`key`:
    "midpoint" or "smallest_T"; NaN where there is none)."""
    import pandas as pd

    from mechlistops.sweep import load_sweep

    if key not in fits.columns:
        known = ", ".join(
            c
            for c in fits.columns
            if c == "midpoint" or c.startswith("smallest_") and not c.endswith("_ci")
        )
        raise ConfigError(f"no N* called {key!r} in these transitions; known: {known}")
    configs = {}
    for sweep in [sweeps] if isinstance(sweeps, (str, Path)) else sweeps:
        for m in load_sweep(sweep).members():
            if not m.config.train.pretrain_steps:
                configs.setdefault("+".join(m.config.data.ops), m.config.data)
    rows = []
    for r in fits.to_dict(orient="records"):
        cfg = configs.get(r["mixture"])
        if cfg is None:
            continue
        value = r[key]
        rows.append(
            {
                "task": r["mixture"],
                "op": r["op"],
                "family": cfg.family,
                "proxy": proxy(cfg),
                "n_star": float("nan") if value is None else float(value),
            }
        )
    return pd.DataFrame(rows)
