"""mechlistops: train tiny TransformerLens models on ListOps mixtures and look inside them.

>>> from mechlistops import load_run
>>> model, config, vocab = load_run("checkpoints/<name>")
"""

__version__ = "0.1.0"

from mechlistops.checkpoint import load_run  # noqa: E402

__all__ = ["load_run", "__version__"]
