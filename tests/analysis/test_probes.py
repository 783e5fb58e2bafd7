"""Probes find a planted linear feature, give chance on noise, and read the right labels."""

import numpy as np
import pytest

from mechlistops.analysis.probes import (
    collect_activations,
    fit_probe,
    heldout_pair_accuracy,
    probe,
    probe_sites,
)
from mechlistops.config import DataConfig, ModelConfig
from mechlistops.data import make_test_sets
from mechlistops.listops import Vocab
from mechlistops.model import build_model


def test_planted_linear_feature_is_found_and_noise_gives_chance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 32))
    groups = np.repeat(np.arange(200), 4)
    planted = (x @ rng.normal(size=32) > 0).astype(int)
    acc, std = fit_probe(x, planted, groups)
    assert acc > 0.95 and std < 0.05
    noise = rng.integers(0, 2, size=800)
    acc, _ = fit_probe(x, noise, groups)
    assert 0.4 < acc < 0.6
    three = rng.integers(0, 3, size=800)
    assert 0.25 < fit_probe(x, three, groups)[0] < 0.42


def test_heldout_pair_accuracy():
    rng = np.random.default_rng(1)
    y = np.arange(10) % 2
    planted = rng.normal(size=(10, 16)) * 0.1 + y[:, None] * rng.normal(size=16)
    assert heldout_pair_accuracy(planted, y) == 1.0
    scores = [
        heldout_pair_accuracy(np.random.default_rng(s).normal(size=(10, 16)), y) for s in range(8)
    ]
    assert 0.3 < np.mean(scores) < 0.7


@pytest.fixture(scope="module")
def small():
    data = DataConfig(test_size=80)
    model = build_model(ModelConfig(n_layers=1, d_model=16, n_heads=2), data, seed=0)
    sets = {k: v for k, v in make_test_sets(data).items() if k in ("SUM", "MAX")}
    return model, sets, Vocab(10)


def test_collect_reads_node_values_at_each_position(small):
    model, sets, vocab = small
    ex = sets["SUM"]
    sites = probe_sites(1)
    assert sites == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.0.hook_resid_post",
    ]
    got = collect_activations(model, ex, vocab, sites, max_items=10_000)
    feats, labels, rows = got["answer"]
    np.testing.assert_array_equal(labels, ex.answers[rows])
    assert feats[sites[0]].shape == (len(ex), 16)
    feats, labels, rows = got["value"]
    assert len(labels) == int((ex.tokens[:, 1:] < 10).sum() - len(ex))  # minus answer tokens
    _, labels, rows = got["close"]
    assert len(labels) == int((ex.tokens == vocab.close).sum())
    assert (labels >= 0).all() and (labels < 10).all()


def test_probe_table_has_controls(small):
    model, sets, vocab = small
    baseline = build_model(ModelConfig(n_layers=1, d_model=16, n_heads=2), DataConfig(), seed=9)
    df = probe(model, baseline, sets, vocab, folds=3, max_items=300)
    assert {"accuracy", "std", "random_init", "shuffled", "chance"} <= set(df.columns)
    assert set(df.position) == {"embedding", "value", "close", "answer"}
    assert ((df.accuracy >= 0) & (df.accuracy <= 1)).all()
    custom = probe(
        model,
        baseline,
        sets,
        vocab,
        targets={"big": lambda v: v >= 5},
        positions=("answer",),
        folds=3,
        max_items=300,
    )
    assert set(custom.target) == {"big"} and len(custom) == 1 + 3


def test_erasing_the_parity_directions_brings_the_probe_to_chance(tiny_run, capsys):
    from mechlistops.analysis.common import prepare
    from mechlistops.analysis.probes import erase_direction
    from mechlistops.cli import main

    inputs = prepare(str(tiny_run), limit=300)
    run = inputs.run
    df = erase_direction(run.model, inputs.sets, run.vocab, "blocks.0.hook_resid_pre", "value")
    a = df.attrs
    assert a["probe_before"] > 0.9  # the token's parity is linearly readable at the embedding
    assert a["probe_after"] <= a["chance"] + 0.05 and 1 <= a["directions"] <= 10
    assert list(df.set) == list(inputs.sets)
    assert np.allclose(df.delta_acc, df.erased_acc - df.clean_acc)
    assert np.allclose(df.delta_random, df.random_acc - df.clean_acc)
    assert (df.clean_acc - df.erased_acc).abs().max() > 0  # the projection reaches the model
    site = ["probe", str(tiny_run), "--erase", "blocks.0.hook_resid_pre", "--limit", "200"]
    assert main([*site, "--positions", "value"]) == 0
    assert "after erasing" in capsys.readouterr().out
    assert main(["probe", str(tiny_run), "--erase", "blocks.7.hook_resid_pre"]) == 2
    assert "no hook point" in capsys.readouterr().err
