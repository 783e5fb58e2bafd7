"""Geometry metrics on synthetic embeddings with known structure."""

import numpy as np
import pytest

from mechlistops.analysis.geometry import circularity, geometry_metrics, ordering, pca


def _circle(n=10, d=16, noise=0.0, seed=0, reflect=False):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0].T  # two orthonormal directions
    angle = 2 * np.pi * np.arange(n) / n * (-1 if reflect else 1) + 0.7
    pts = np.stack([np.cos(angle), np.sin(angle)], 1) @ basis
    return pts + noise * rng.normal(size=pts.shape)


@pytest.mark.parametrize("reflect", [False, True])
def test_circle_scores_one_on_circularity(reflect):
    m = geometry_metrics(_circle(noise=0.01, reflect=reflect))
    assert m["circularity"] > 0.98
    assert m["parity"] < 0.6  # a circle in order does not separate even from odd linearly


def test_random_embeddings_score_low():
    scores = [
        circularity(pca(np.random.default_rng(s).normal(size=(10, 16)), 2)) for s in range(20)
    ]
    assert np.mean(scores) < 0.45


def test_line_in_order_scores_one_on_ordering_and_parity_plane_separates():
    rng = np.random.default_rng(0)
    direction, parity_dir = rng.normal(size=(2, 16))
    v = np.arange(10)
    x = (
        v[:, None] * direction * 3
        + (v % 2)[:, None] * parity_dir
        + 0.01 * rng.normal(size=(10, 16))
    )
    m = geometry_metrics(x)
    assert m["ordering"] == pytest.approx(1.0)
    assert m["parity"] == 1.0
    assert ordering(pca(rng.normal(size=(10, 16)), 2)) < 0.9


def test_parity_of_random_embeddings_is_near_chance():
    from mechlistops.analysis.geometry import parity_separability

    scores = [
        parity_separability(np.random.default_rng(s).normal(size=(10, 16))) for s in range(10)
    ]
    assert 0.3 < np.mean(scores) < 0.7
