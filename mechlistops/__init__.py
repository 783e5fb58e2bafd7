"""mechlistops: train tiny TransformerLens models on ListOps mixtures and look inside them.

>>> from mechlistops import load_run
>>> model, config, vocab = load_run("checkpoints/<name>")
"""

__version__ = "0.1.0"
__all__ = ["load_run", "__version__"]


def __getattr__(name: str):
    # Imported on first use, so that `import mechlistops.cli` can set the OpenMP wait policy
    # before torch loads (mechlistops.threads).
    if name == "load_run":
        from mechlistops.checkpoint import load_run

        return load_run
    raise AttributeError(f"module 'mechlistops' has no attribute {name!r}")
