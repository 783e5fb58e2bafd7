"""Analyses of saved runs: each takes a run (or `RUN@STEP`), rebuilds its model and held-out
sets, and returns data (DataFrames, dataclasses) that the CLI prints, writes as JSON, and plots
with `analysis.viz`. Hooks are always temporary.
"""
