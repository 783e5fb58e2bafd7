"""Embedding geometry: is there number structure in how the model represents values?

Context / intuition (the paper's claim 4): jointly trained models place the value tokens in
order, on a circle (as residues mod n), and split even from odd; SUM-only models do not. Three
numbers, not only pictures, each beside the same number for the run's own initialisation (its
step-0 checkpoint, a random model of the same config):
- ordering: |Spearman correlation| between PC1 and the value (1 = values lie in order along PC1);
- circularity: how well the angle in the PC1-PC2 plane follows 2*pi*v/n up to a rotation and a
  reflection, |mean_v exp(i (theta_v -/+ 2 pi v / n))|, best sign (1 = evenly spaced in order
  around the circle, ~0 = unrelated);
- parity separability: accuracy of a linear parity classifier on held-out values (one even and
  one odd value left out at a time);
- key frequency and its share: the share of the rows' variance at each frequency k = 1..n/2 of
  the discrete Fourier transform over the value index (`fourier_spectrum`), and the k that
  holds the most. A circle visited in the order v -> k*v mod n puts all of it at k: modular
  addition can be solved on a circle at any k coprime to n, which circularity (k = 1) misses.
Computed on the value rows of W_E; on the residual stream at value tokens (the mean vector of
each value at each layer's `resid_post`); on the residual stream at the `=` that predicts the
answer (the mean vector of each answer at each layer's `resid_post`, named `... @ =`): what the
model has computed, grouped by its result; and on the value columns of W_U (the readout). A
model that adds on a circle at frequency k shows k in all three places, not only in W_E.

The perm family's elements have no order; the group's own questions replace the three numbers:
do the element embeddings separate by sign (the cosets of the alternating group), by the left
cosets of the stabiliser of the last point (which point g sends there: g(k-1)), or by the left
cosets of the cyclic subgroup <r>? Each is the held-out accuracy of a linear classifier of that
labelling, leaving out one row at a time (sign: one even and one odd, as for parity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from mechlistops.analysis.common import position_mask
from mechlistops.data import Examples
from mechlistops.evaluate import batches
from mechlistops.groups import SymmetricGroup
from mechlistops.listops import Vocab
from mechlistops.tl import HookedTransformer


def pca(x: np.ndarray, k: int = 3) -> np.ndarray:
    """(n, k) coordinates on the first k principal components, signs fixed so that PC_i
    correlates positively with the row index (makes pictures comparable across runs)."""
    k = min(k, *x.shape)
    coords = PCA(n_components=k).fit_transform(x)
    idx = np.arange(len(x))
    signs = np.where(
        [np.corrcoef(c, idx)[0, 1] < 0 if c.std() > 0 else False for c in coords.T], -1.0, 1.0
    )
    return coords * signs


def ordering(coords: np.ndarray) -> float:
    return float(abs(spearmanr(coords[:, 0], np.arange(len(coords))).statistic))


def circularity(coords: np.ndarray) -> float:
    n = len(coords)
    theta = np.arctan2(coords[:, 1], coords[:, 0])
    target = 2 * np.pi * np.arange(n) / n
    return float(max(abs(np.exp(1j * (theta - s * target)).mean()) for s in (1, -1)))


def fourier_spectrum(x: np.ndarray) -> np.ndarray:
    """Share of the variance of the rows of `x` (row v represents value v) at each frequency
    k = 1..n//2 of the discrete Fourier transform over v (k and n - k together)."""
    x = x - x.mean(0)
    n = len(x)
    power = (np.abs(np.fft.fft(x, axis=0)) ** 2).sum(1)
    per_k = [power[k] + (power[n - k] if 2 * k != n else 0) for k in range(1, n // 2 + 1)]
    return np.asarray(per_k) / max(sum(per_k), 1e-30)


def parity_separability(x: np.ndarray, values: np.ndarray | None = None) -> float:
    """Held-out accuracy of a linear parity classifier, leaving out one even and one odd value
    at a time (leaving out a single value would unbalance the classes and reward predicting the
    majority). ~0.5 when parity is not a linear direction; 1 when it is."""
    values = np.arange(len(x)) if values is None else values
    even, odd = np.flatnonzero(values % 2 == 0), np.flatnonzero(values % 2 == 1)
    correct = []
    for e in even:
        for o in odd:
            train = np.setdiff1d(np.arange(len(x)), [e, o])
            clf = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], values[train] % 2)
            correct.extend(clf.predict(x[[e, o]]) == values[[e, o]] % 2)
    return float(np.mean(correct))


def class_separability(x: np.ndarray, labels: np.ndarray) -> float:
    """Held-out accuracy of a linear classifier of `labels`, leaving out one row at a time;
    chance is about 1 / (number of classes)."""
    correct = []
    for i in range(len(x)):
        train = np.setdiff1d(np.arange(len(x)), [i])
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], labels[train])
        correct.append(clf.predict(x[[i]])[0] == labels[i])
    return float(np.mean(correct))


def coset_labels(group: SymmetricGroup) -> dict[str, np.ndarray]:
    """Per element: its sign, its left coset of the last point's stabiliser (g(k-1)) and its
    left coset of the cyclic subgroup <r>."""
    cyclic = set(int(c) for c in group.cyclic)
    coset_of, cyc = {}, np.zeros(len(group), dtype=int)
    for g in range(len(group)):
        members = frozenset(int(group.table[g, c]) for c in cyclic)
        cyc[g] = coset_of.setdefault(members, len(coset_of))
    return {"sign": group.sign, "last point": group.image_last, "cyclic coset": cyc}


def geometry_metrics(x: np.ndarray, group: SymmetricGroup | None = None) -> dict[str, float]:
    """The numbers for an (n values, d) matrix whose row v represents value v: ordering,
    circularity, parity for residues; sign and coset separability for a group's elements."""
    x = x - x.mean(0)
    if group is not None:
        labels = coset_labels(group)
        return {
            "sign": parity_separability(x, labels["sign"]),
            "last point": class_separability(x, labels["last point"]),
            "cyclic coset": class_separability(x, labels["cyclic coset"]),
        }
    coords = pca(x, 2)
    spectrum = fourier_spectrum(x)
    return {
        "ordering": ordering(coords),
        "circularity": circularity(coords),
        "parity": parity_separability(x),
        "key frequency": float(np.argmax(spectrum) + 1),
        "key frequency share": float(spectrum.max()),
    }


@torch.no_grad()
def stream_means(model: HookedTransformer, sets: dict[str, Examples], modulus: int) -> dict:
    """Mean residual stream (`blocks.{l}.hook_resid_post`) per value, {name: (modulus,
    d_model)}: at value tokens, by the token's value (named by the hook), and at the `=` whose
    next token is the answer, by the answer (named `{hook} @ =`)."""
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    device = model.W_E.device
    sums = {
        (n, at): torch.zeros(modulus, model.cfg.d_model, device=device)
        for n in names
        for at in ("value", "answer")
    }
    counts = {at: torch.zeros(modulus, device=device) for at in ("value", "answer")}
    for ex in sets.values():
        for tokens, pos, answers, lengths in batches(ex, device=device):
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            is_value = (tokens < modulus) & position_mask(lengths, tokens.shape[1])
            is_value &= torch.arange(tokens.shape[1], device=tokens.device)[None] <= pos[:, None]
            vals = tokens[is_value]
            counts["value"] += torch.bincount(vals, minlength=modulus)
            counts["answer"] += torch.bincount(answers, minlength=modulus)
            rows = torch.arange(len(pos), device=device)
            for n in names:
                sums[n, "value"].index_add_(0, vals, cache[n][is_value])
                sums[n, "answer"].index_add_(0, answers, cache[n][rows, pos])
    return {
        (n if at == "value" else f"{n} @ ="): (s / counts[at].clamp(min=1)[:, None]).cpu().numpy()
        for (n, at), s in sorted(sums.items(), key=lambda kv: kv[0][1] == "answer")
    }


def representations(
    model: HookedTransformer, sets: dict[str, Examples], modulus: int
) -> dict[str, np.ndarray]:
    """Every (modulus, d) matrix whose row v stands for value v, in the order the model uses
    them: W_E's value rows, `stream_means` (at value tokens, then at the answer's `=`), W_U's
    value columns."""
    return {
        "W_E": model.W_E[:modulus].detach().cpu().numpy(),
        **stream_means(model, sets, modulus),
        "W_U": model.W_U[:, :modulus].T.detach().cpu().numpy(),
    }


@dataclass
class Geometry:
    metrics: pd.DataFrame  # representation, metric, trained, random_init
    embeddings: np.ndarray  # (modulus, d_model) value rows of W_E, trained model
    coords: np.ndarray  # (modulus, 3) PCA of the embeddings
    cosine: np.ndarray  # (modulus, modulus)
    names: list[str]  # the value tokens, in row order
    parity: np.ndarray  # (modulus,) parity of a residue, sign of an element
    spectra: dict[str, list[float]]  # representation: share at k = 1..n//2, trained (residues)


def geometry(
    model: HookedTransformer, baseline: HookedTransformer, sets: dict[str, Examples], vocab: Vocab
) -> Geometry:
    """Metrics for W_E, each layer's residual stream at value tokens and at the answer's `=`,
    and W_U's value columns, trained vs `baseline` (a random initialisation of the same
    config)."""
    modulus = vocab.n_values
    reps = {}
    for label, m in (("trained", model), ("random_init", baseline)):
        reps[label] = representations(m, sets, modulus)
    rows = []
    for rep in reps["trained"]:
        trained = geometry_metrics(reps["trained"][rep], vocab.group)
        random = geometry_metrics(reps["random_init"][rep], vocab.group)
        for metric in trained:
            rows.append(
                {
                    "representation": rep,
                    "metric": metric,
                    "trained": trained[metric],
                    "random_init": random[metric],
                }
            )
    emb = reps["trained"]["W_E"]
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    values = np.arange(modulus)
    return Geometry(
        pd.DataFrame(rows),
        emb,
        pca(emb - emb.mean(0), 3),
        unit @ unit.T,
        vocab.tokens[:modulus],
        vocab.parity(values),
        {}  # the elements of S_k have no index order to transform over
        if vocab.group is not None
        else {rep: fourier_spectrum(x).tolist() for rep, x in reps["trained"].items()},
    )
