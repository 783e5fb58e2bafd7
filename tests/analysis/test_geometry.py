"""Geometry metrics on synthetic embeddings with known structure."""

import numpy as np
import pytest

from mechlistops.analysis.geometry import (
    circularity,
    fourier_spectrum,
    geometry_metrics,
    ordering,
    pca,
)


def _circle(n=10, d=16, noise=0.0, seed=0, reflect=False, k=1):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0].T  # two orthonormal directions
    angle = 2 * np.pi * k * np.arange(n) / n * (-1 if reflect else 1) + 0.7
    pts = np.stack([np.cos(angle), np.sin(angle)], 1) @ basis
    return pts + noise * rng.normal(size=pts.shape)


@pytest.mark.parametrize("reflect", [False, True])
def test_circle_scores_one_on_circularity(reflect):
    m = geometry_metrics(_circle(noise=0.01, reflect=reflect))
    assert m["circularity"] > 0.98
    assert m["parity"] < 0.6  # a circle in order does not separate even from odd linearly


@pytest.mark.parametrize("k", [1, 3, 4])
def test_a_circle_at_frequency_k_puts_its_variance_at_k(k):
    # v -> k*v mod 10 around the circle: circularity (k = 1) sees it only when k is 1
    m = geometry_metrics(_circle(noise=0.01, k=k))
    assert m["key frequency"] == k and m["key frequency share"] > 0.98
    assert (m["circularity"] > 0.98) == (k == 1)


def test_the_spectrum_of_a_line_and_of_noise():
    spectrum = fourier_spectrum(np.arange(10.0)[:, None] * np.ones((1, 16)))
    assert spectrum.sum() == pytest.approx(1.0) and np.argmax(spectrum) == 0  # mostly k = 1
    shares = [
        fourier_spectrum(np.random.default_rng(s).normal(size=(10, 16))).max() for s in range(20)
    ]
    assert np.mean(shares) < 0.45  # five frequencies, none preferred


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


def test_stream_means_group_the_answer_position_by_answer(tiny_run):
    import torch

    from mechlistops import load_run
    from mechlistops.analysis.geometry import representations
    from mechlistops.data import make_test_sets

    run = load_run(tiny_run)
    ex = make_test_sets(run.config.data)["MAX"].subset(slice(0, 200))
    reps = representations(run.model, {"MAX": ex}, 10)
    hook = "blocks.0.hook_resid_post"
    assert list(reps) == ["W_E", hook, f"{hook} @ =", "W_U"]
    tokens = torch.as_tensor(ex.tokens[:, : ex.lengths.max()].astype(np.int64))
    _, cache = run.model.run_with_cache(tokens, names_filter=hook)
    at_eq = cache[hook][torch.arange(len(ex)), torch.as_tensor(ex.answer_pos)].numpy()
    for v in np.unique(ex.answers):  # the mean over the examples whose answer is v
        np.testing.assert_allclose(
            reps[f"{hook} @ ="][v], at_eq[ex.answers == v].mean(0), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_array_equal(reps["W_U"], run.model.W_U[:, :10].T.detach().numpy())
    assert not np.allclose(reps[f"{hook} @ ="], reps[hook])  # not the value tokens' means
