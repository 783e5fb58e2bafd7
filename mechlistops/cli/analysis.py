"""`mechlistops ablate | attribute | probe | geometry | report`: analyses of saved runs.

Each command loads RUN or RUN@STEP, calls `mechlistops.analysis`, prints a table (or JSON with
--json), and saves the numbers and a figure under RUN/analysis/.
"""

from __future__ import annotations

import json
from pathlib import Path

from mechlistops.analysis.common import analysis_path
from mechlistops.cli.options import bounded, numbers
from mechlistops.cli.train import add_device_option
from mechlistops.config import MAX_SEED, parse_ops
from mechlistops.errors import ConfigError

_SEED = bounded(int, 0, MAX_SEED)


# ----------------------------------------------------------------------------- analyses
def _format_ablation(df) -> str:
    sets = list(dict.fromkeys(df["set"]))
    clean = df.drop_duplicates("set").set_index("set")["clean_acc"]
    width = max(12, *(len(s) for s in df["site"]))
    head = f"{'site':<{width}} " + " ".join(f"{s:>16}" for s in sets)
    lines = [head, f"{'clean':<{width}} " + " ".join(f"{clean[s]:>16.3f}" for s in sets)]
    for site, group in df.groupby("site", sort=False):
        g = group.set_index("set")
        cells = [f"{g.ablated_acc[s]:.3f} ({g.delta_acc[s]:+.3f})" for s in sets]
        lines.append(f"{site:<{width}} " + " ".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def cmd_ablate(args) -> int:
    from mechlistops.analysis.ablation import ablate, sites_for
    from mechlistops.analysis.common import prepare
    from mechlistops.analysis.viz import plot_ablation
    from mechlistops.checkpoint import write_json
    from mechlistops.model import resolve_device

    inputs = prepare(args.run, args.ops, args.limit, device=resolve_device(args.device))
    model = inputs.run.model
    sites = sites_for(model, args.component, args.layer, args.head)
    df = ablate(model, inputs.sets, sites, args.mode, args.seed, inputs.reference)
    stem = f"ablation_{args.component}_{args.mode}"
    json_path = analysis_path(args.run, stem, "json")
    write_json(json_path, df.to_dict(orient="records"))
    figure = plot_ablation(
        df,
        json_path.with_suffix(".png"),
        title=f"{args.run}: {args.mode} ablation of {args.component}",
    )
    if args.json:
        print(df.to_json(orient="records", indent=2))
        return 0
    print(f"{args.mode} ablation, accuracy when ablated (change from clean):")
    print(_format_ablation(df))
    print(f"\nsaved {json_path} and {figure}")
    return 0


def cmd_attribute(args) -> int:
    import numpy as np

    from mechlistops.analysis.attribution import (
        activation_patching,
        attribution_patching,
        direct_logit_attribution,
        usage_ratios,
    )
    from mechlistops.analysis.common import prepare
    from mechlistops.analysis.viz import plot_attribution
    from mechlistops.checkpoint import write_json
    from mechlistops.model import resolve_device

    inputs = prepare(args.run, args.ops, args.limit, device=resolve_device(args.device))
    model, modulus = inputs.run.model, inputs.run.config.data.n_values
    usage = usage_ratios(model, inputs.sets)
    dla = direct_logit_attribution(model, inputs.sets, modulus)
    patching = attribution_patching(model, inputs.sets, modulus, seed=args.seed)
    if args.exact:  # the quantity attribution patching estimates, one forward pass per site
        exact = activation_patching(model, inputs.sets, modulus, seed=args.seed)
        patching = patching.merge(exact, on=["set", "site"])
    json_path = analysis_path(args.run, "attribution", "json")
    records = {
        "usage": usage.to_dict(orient="records"),
        "dla": dla.to_dict(orient="records"),
        "patching": patching.to_dict(orient="records"),
    }
    write_json(json_path, records)
    figure = plot_attribution(
        usage, dla, json_path.with_suffix(".png"), title=args.run, patching=patching
    )
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    table = usage.pivot_table(index=["layer", "sublayer"], columns=["where", "set"], values="ratio")
    print("usage ratio ||sublayer output|| / ||residual input|| (mean per example):")
    print(table.round(3).to_string())
    print(
        "\ndirect logit attribution to the answer's logit (mean; logit difference to the "
        "runner-up in brackets):"
    )
    for set_name, g in dla.groupby("set", sort=False):
        top = g.reindex(g["logit"].abs().sort_values(ascending=False).index).head(args.top)
        cells = ", ".join(
            f"{r.component} {r.logit:+.2f} ({r.logit_diff:+.2f})" for r in top.itertuples()
        )
        print(f"  {set_name}: {cells}")
    print(
        "\nattribution patching: estimated change of the answer-vs-runner-up logit difference "
        "when a site takes another example's activation (clean difference in brackets):"
    )
    for set_name, g in patching.groupby("set", sort=False):
        top = g.reindex(g["score"].abs().sort_values(ascending=False).index).head(args.top)
        if args.exact:
            cells = ", ".join(
                f"{r.site} {r.score:+.2f} [{r.effect:+.2f}]" for r in top.itertuples()
            )
            r_ = np.corrcoef(g.score, g.effect)[0, 1] if g.score.std() and g.effect.std() else None
            corr = f"; Pearson r = {r_:.2f} over {len(g)} sites" if r_ is not None else ""
            print(f"  {set_name} ({g.clean_metric.iloc[0]:.2f}): {cells}{corr}")
        else:
            cells = ", ".join(f"{r.site} {r.score:+.2f}" for r in top.itertuples())
            print(f"  {set_name} ({g.clean_metric.iloc[0]:.2f}): {cells}")
    if args.exact:
        print(
            "  [exact effect of the same patch, transformer_lens.patching, noising: clean input, "
            "one site from the corrupted run]"
        )
    print(f"\nsaved {json_path} and {figure}")
    return 0


def cmd_geometry(args) -> int:
    from mechlistops.analysis.common import prepare, random_init
    from mechlistops.analysis.geometry import geometry
    from mechlistops.analysis.viz import plot_geometry
    from mechlistops.checkpoint import write_json
    from mechlistops.model import resolve_device

    device = resolve_device(args.device)
    inputs = prepare(args.run, args.ops, args.limit, device=device)
    run = inputs.run
    geo = geometry(run.model, random_init(run, device), inputs.sets, run.vocab)
    json_path = analysis_path(args.run, "geometry", "json")
    records = {
        "metrics": geo.metrics.to_dict(orient="records"),
        "pca_W_E": geo.coords.tolist(),
        "cosine_W_E": geo.cosine.tolist(),
        "fourier_spectra": geo.spectra,  # representation: variance share at k = 1..n//2
    }
    write_json(json_path, records)
    figure = plot_geometry(geo, json_path.with_suffix(".png"), title=args.run)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    table = geo.metrics.pivot(
        index="representation", columns="metric", values=["trained", "random_init"]
    )
    table = table.loc[geo.metrics.representation.unique()]
    if run.vocab.group is None:
        print(
            "value geometry: trained (random init); ordering = |Spearman(PC1, value)|, "
            "circularity = fit of the PC1-PC2 angle to 2*pi*v/n, parity = held-out linear "
            "accuracy, key frequency = the Fourier frequency over values holding the most "
            "variance (share: how much); rows: W_E's value rows, the mean resid_post at value "
            "tokens per value, at the answer's `=` per answer (@ =), W_U's value columns"
        )
    else:
        print(
            "element geometry: trained (random init); held-out linear accuracy of each element's "
            "sign, its coset of the last point's stabiliser, its coset of <r>"
        )
    width = max(map(len, table.index)) + 2
    for rep, row in table.iterrows():
        cells = "  ".join(
            f"{m} {row[('trained', m)]:.{0 if m == 'key frequency' else 2}f} "
            f"({row[('random_init', m)]:.{0 if m == 'key frequency' else 2}f})"
            for m in geo.metrics.metric.unique()
        )
        print(f"  {rep:<{width}}{cells}")
    print(f"\nsaved {json_path} and {figure}")
    return 0


def cmd_probe(args) -> int:
    from mechlistops.analysis.common import prepare, random_init
    from mechlistops.analysis.probes import POSITIONS, probe, targets_for
    from mechlistops.analysis.viz import plot_probes
    from mechlistops.checkpoint import write_json
    from mechlistops.model import resolve_device

    positions = tuple(_choices(args.positions or ",".join(POSITIONS), POSITIONS, "position"))
    device = resolve_device(args.device)
    inputs = prepare(args.run, args.ops, args.limit, device=device)
    run = inputs.run
    known = targets_for(run.vocab)
    targets = {t: known[t] for t in _choices(args.targets or ",".join(known), known, "target")}
    if args.erase:
        return _erase(args, inputs, positions[0] if args.positions else "answer", targets)
    df = probe(
        run.model,
        random_init(run, device),
        inputs.sets,
        run.vocab,
        targets,
        positions,
        folds=args.folds,
        max_items=args.max_items,
        seed=args.seed,
    )
    json_path = analysis_path(args.run, "probes", "json")
    write_json(json_path, df.to_dict(orient="records"))
    figure = plot_probes(df, json_path.with_suffix(".png"), title=args.run)
    if args.json:
        print(df.to_json(orient="records", indent=2))
        return 0
    print("held-out probe accuracy +- spread over folds (random init / shuffled labels / chance):")
    for (kind, target), g in df.groupby(["position", "target"], sort=False):
        print(f"  {target} at {kind}:")
        for r in g.itertuples():
            spread = "" if r.std != r.std else f" +- {r.std:.3f}"  # NaN for W_E
            print(
                f"    {r.site:<26} {r.accuracy:.3f}{spread}  "
                f"({r.random_init:.3f} / {r.shuffled:.3f} / {r.chance:.3f})"
            )
    print(f"\nsaved {json_path} and {figure}")
    return 0


def _erase(args, inputs, position: str, targets: dict) -> int:
    """`probe --erase SITE`: project the probe direction out at SITE, measure accuracy."""
    from mechlistops.analysis.probes import erase_direction
    from mechlistops.checkpoint import write_json

    target = next(iter(targets)) if args.targets else "parity"
    run = inputs.run
    df = erase_direction(
        run.model, inputs.sets, run.vocab, args.erase, position, target, args.max_items, args.seed
    )
    a = df.attrs
    json_path = analysis_path(args.run, f"probe_erase_{args.erase}_{position}_{target}", "json")
    record = {**a, "sets": df.to_dict(orient="records")}
    write_json(json_path, record)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(
        f"{target} probe at {position} positions of {a['site']}: held-out accuracy "
        f"{a['probe_before']:.3f} before, {a['probe_after']:.3f} after erasing "
        f"{a['directions']} direction(s) (chance {a['chance']:.3f})"
    )
    print(
        "accuracy with those directions projected out at every position (as many random "
        "directions):"
    )
    for r in df.itertuples():
        print(
            f"  {r.set:<8} clean {r.clean_acc:.3f}  erased {r.erased_acc:.3f} "
            f"({r.delta_acc:+.3f})  random {r.random_acc:.3f} ({r.delta_random:+.3f})"
        )
    print(f"\nsaved {json_path}")
    return 0


def cmd_report(args) -> int:
    from mechlistops.model import resolve_device
    from mechlistops.report import build_report

    out = build_report(
        args.runs,
        Path(args.out),
        limit=args.limit,
        device=resolve_device(args.device),
        workers=args.workers,
        split=args.split_at,
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained)")
    return 0


def cmd_analyse(args) -> int:
    import numpy as np

    from mechlistops.atomic import check_writable_dir
    from mechlistops.model import resolve_device
    from mechlistops.population import (
        ANALYSES,
        Settings,
        aggregate,
        analyse_runs,
        split_at,
        write_outputs,
    )
    from mechlistops.sweep import check_run_paths

    analyses = _choices(args.analyses, ANALYSES, "analysis") if args.analyses else ANALYSES
    if args.out is None and len(args.runs) > 1:
        raise ConfigError("several runs or folders given: say where the table goes (--out)")
    check_run_paths(args.runs)
    out = check_writable_dir(Path(args.out or args.runs[0]), "output directory")
    target = parse_ops(args.target)[0]
    df = analyse_runs(
        [Path(p) for p in args.runs],
        tuple(analyses),
        Settings(limit=args.limit, target=target, ablate_on=args.ablate_on),
        mixtures=tuple("+".join(parse_ops(m)) for m in args.mixture or ()) or None,
        d_models=args.d_model_list,
        workers=args.workers,
        device=str(resolve_device(args.device)),
        progress=not args.no_progress,
    )
    for name in df.attrs["skipped"]:
        print(f"  skipped {name}: not finished")
    for name, reason in df.attrs["failed"].items():
        print(f"  FAILED {name}: {reason}")
    if df.empty:
        raise ConfigError(f"{', '.join(args.runs)}: no member could be analysed")
    if args.split_at is not None:
        df = split_at(df, args.split_at, target)
    table = aggregate(df, n_boot=args.bootstrap)
    files = write_outputs(df, table, out)
    if not any(target in m.split(" after ")[0].split("+") for m in df.mixture.unique()):
        print(f"  no member trains {target}: no ablation drops (--target to choose another)")
    shown = table.assign(
        cell=lambda t: (
            t["median"].map("{:.2f}".format)
            + " "
            + t.ci_low.combine(
                t.ci_high,
                lambda lo, hi: "[no interval]" if np.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]",
            )
        ),
        label=lambda t: t.mixture + ", " + t.data if t.data.nunique() > 1 else t.mixture,
    )
    width = max(24, shown.label.str.len().max())
    for metric, g in shown.groupby("metric", sort=False):
        print(f"\n{metric} (median over seeds [95% bootstrap interval]):")
        for r in g.sort_values(["mixture", "data", "n_params"]).itertuples():
            seeds = f"{r.seeds} seed{'s' * (r.seeds != 1)}"
            print(f"  {r.label:<{width}} {r.n_params:>9,} params  {r.cell}  ({seeds})")
    print(
        f"\nsaved {files['json']}, {files['csv']} and {len(files) - 2} figures in {out}/analysis/"
    )
    return 1 if df.attrs["failed"] else 0


def cmd_steps(args) -> int:
    from mechlistops.atomic import write_text
    from mechlistops.checkpoint import load_run_config, parse_run_spec
    from mechlistops.model import resolve_device
    from mechlistops.population import ANALYSES, Settings, analyse_steps, plot_steps

    run_dir, step = parse_run_spec(args.run)
    if step is not None:
        raise ConfigError(f"{args.run}: give the run directory; --steps picks the steps")
    analyses = _choices(args.analyses, ANALYSES, "analysis") if args.analyses else ANALYSES
    steps = None if args.steps == "all" else _steps(args.steps)
    target = parse_ops(args.target)[0] if args.target else load_run_config(run_dir).data.ops[0]
    df = analyse_steps(
        run_dir,
        steps,
        tuple(analyses),
        Settings(limit=args.limit, target=target),
        workers=args.workers,
        device=str(resolve_device(args.device)),
        progress=not args.no_progress,
    )
    for s, reason in df.attrs["failed"].items():
        print(f"  FAILED step {s}: {reason}")
    if df.empty:
        raise ConfigError(f"{args.run}: no step could be analysed")
    table = df.pivot(index="step", columns="metric", values="value")
    csv_path = analysis_path(str(run_dir), "steps", "csv")
    write_text(csv_path, table.to_csv())
    figure = plot_steps(df, run_dir, csv_path.with_suffix(".png"))
    for metric in table.columns:
        if metric.endswith("(random init)"):
            continue
        cells = "  ".join(f"{s}: {v:.2f}" for s, v in table[metric].items())
        print(f"{metric}\n  {cells}")
    print(f"\nsaved {csv_path} ({len(table.columns)} metrics x {len(table)} steps) and {figure}")
    return 1 if df.attrs["failed"] else 0


def _steps(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--steps must be 'all' or steps like 0,100,1000; got {text!r}")
    return [int(p) for p in parts]


def _choices(text: str, known, what: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return names


_LIMIT = bounded(int, 1, 10**6)  # examples per test set


def add_parsers(sub) -> None:
    from mechlistops.analysis.ablation import COMPONENTS, MODES

    w = sub.add_parser(
        "analyse",
        help="geometry, probes, attribution and ablation over every finished run of a sweep or "
        "of folders of runs",
    )
    w.add_argument("runs", nargs="+", help="sweeps, runs, or folders of runs (read at any depth)")
    w.add_argument("--analyses", help="some of geometry,probe,attribute,ablate (default: all)")
    w.add_argument("--mixture", action="append", help="only this mixture (repeat for several)")
    w.add_argument("--d-model", dest="d_model_list", type=numbers(int), help="only these sizes")
    w.add_argument("--limit", type=_LIMIT, default=500, help="examples per test set")
    w.add_argument("--target", default="SUM", help="operator whose accuracy the ablations read")
    w.add_argument(
        "--ablate-on",
        choices=("test", "pool"),
        default="test",
        help="the target's test set, or its training pool (where a memoriser is accurate)",
    )
    w.add_argument(
        "--split-at",
        type=bounded(float, 0.0, 1.0),
        help="split each mixture by the target's final held-out accuracy at this threshold "
        "(e.g. 0.9: the models that compute it apart from those that do not)",
    )
    w.add_argument("--bootstrap", type=bounded(int, 1, 100_000), default=1000)
    w.add_argument("--workers", type=bounded(int, 0, 1024), default=0, help="0: one per core")
    w.add_argument(
        "--out", help="where the table and figures go (default: the one sweep or folder given)"
    )
    w.add_argument("--no-progress", action="store_true")
    add_device_option(w, threads=False)
    w.set_defaults(func=cmd_analyse)

    g = sub.add_parser(
        "steps", help="the analyse numbers at every saved step of one run, beside its accuracy"
    )
    g.add_argument("run", help="run directory")
    g.add_argument("--steps", default="all", help="all (every saved step) or e.g. 0,100,1000")
    g.add_argument("--analyses", help="some of geometry,probe,attribute,ablate (default: all)")
    g.add_argument("--limit", type=_LIMIT, default=500, help="examples per test set")
    g.add_argument("--target", help="operator the ablations read (default: the run's first)")
    g.add_argument("--workers", type=bounded(int, 0, 1024), default=0, help="0: one per core")
    g.add_argument("--no-progress", action="store_true")
    add_device_option(g, threads=False)
    g.set_defaults(func=cmd_steps)

    a = sub.add_parser("ablate", help="accuracy with an MLP, attention layer or head ablated")
    a.add_argument("run", help="run directory, or RUN@STEP")
    a.add_argument("--component", choices=COMPONENTS, required=True)
    a.add_argument("--layer", type=int, help="default: each layer, then all together")
    a.add_argument("--head", type=int, help="with --component head: one head (default: each)")
    a.add_argument("--mode", choices=MODES, default="zero")
    a.add_argument("--ops", help="test sets to use (default: all of the run's)")
    a.add_argument("--limit", type=_LIMIT, help="examples per test set (default: all)")
    a.add_argument("--seed", type=_SEED, default=0, help="resample permutation seed")
    add_device_option(a)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_ablate)

    t = sub.add_parser(
        "attribute", help="attention vs MLP usage ratios and direct logit attribution"
    )
    t.add_argument("run", help="run directory, or RUN@STEP")
    t.add_argument("--ops", help="test sets to use (default: all of the run's)")
    t.add_argument("--limit", type=_LIMIT, help="examples per test set (default: all)")
    t.add_argument(
        "--top", type=bounded(int, 1, 1000), default=6, help="components to print per test set"
    )
    t.add_argument("--seed", type=_SEED, default=0, help="corruption permutation seed (patching)")
    t.add_argument(
        "--exact",
        action="store_true",
        help="also run exact activation patching of every site (transformer_lens.patching) "
        "and print it beside the attribution estimate, with their correlation",
    )
    add_device_option(t)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_attribute)

    g = sub.add_parser("geometry", help="PCA, cosine similarity and number structure of values")
    g.add_argument("run", help="run directory, or RUN@STEP")
    g.add_argument("--ops", help="test sets used for the residual stream (default: all)")
    g.add_argument("--limit", type=_LIMIT, help="examples per test set (default: all)")
    add_device_option(g)
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_geometry)

    p = sub.add_parser("probe", help="linear probes of node values on the residual stream")
    p.add_argument("run", help="run directory, or RUN@STEP")
    p.add_argument(
        "--targets",
        default=None,
        help="parity, value, mod3 (default: all); for S_k runs: parity (the sign), value, "
        "last point",
    )
    p.add_argument(
        "--positions",
        default=None,
        help="value, close, answer (default: all; with --erase: answer)",
    )
    p.add_argument(
        "--erase",
        metavar="SITE",
        help="instead of the table: project the first target's probe direction (default "
        "parity) out of SITE (e.g. blocks.1.hook_resid_pre) at every position and measure "
        "accuracy, beside a random direction",
    )
    p.add_argument("--ops", help="test sets to pool (default: all of the run's)")
    p.add_argument("--limit", type=_LIMIT, help="examples per test set (default: all)")
    p.add_argument(
        "--folds",
        type=bounded(int, 2, 100),
        default=5,
        help="cross-validation folds, by expression",
    )
    p.add_argument(
        "--max-items",
        type=bounded(int, 2, 10**6),
        default=1000,
        help="positions per kind (subsampled)",
    )
    p.add_argument("--seed", type=_SEED, default=0)
    add_device_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_probe)

    r = sub.add_parser(
        "report", help="one offline HTML page: runs side by side, sweeps and folders as populations"
    )
    r.add_argument(
        "runs",
        nargs="+",
        help="run directories (or RUN@STEP); sweeps and folders of runs (their populations)",
    )
    r.add_argument("--out", default="report.html")
    r.add_argument(
        "--split-at",
        type=bounded(float, 0.0, 1.0),
        help="populations: split each mixture by SUM's final held-out accuracy at this "
        "threshold (as `analyse --split-at`)",
    )
    r.add_argument("--limit", type=_LIMIT, default=1000, help="examples per test set (runs)")
    r.add_argument(
        "--workers",
        type=bounded(int, 0, 1024),
        default=0,
        help="populations: processes (0: one per core)",
    )
    add_device_option(r)
    r.set_defaults(func=cmd_report)
