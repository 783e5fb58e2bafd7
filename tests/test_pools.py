"""Finite training pools: deterministic, disjoint from every test set, independent of the
mixture, cycled in epochs; pool accuracy scored on pool rows; resumption stays exact."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mechlistops.config import OPERATORS, DataConfig, TrainConfig
from mechlistops.data import Examples, heldout_mask, make_test_sets, row_hashes, sample_examples
from mechlistops.errors import ConfigError
from mechlistops.evaluate import evaluate_set
from mechlistops.model import build_model
from mechlistops.pools import PoolStream, evaluation_data, pool_digest
from mechlistops.train import train

from .conftest import tiny_config, train_interrupted

POOLED = DataConfig(ops=("SUM", "MAX", "MED"), tree="single", train_size=500, test_size=300)


def _hashes(ex) -> set[int]:
    return set(row_hashes(ex.tokens).tolist())


def test_pools_are_distinct_deterministic_and_disjoint_from_every_test_set():
    sets, pools = evaluation_data(POOLED)
    again, pools2 = evaluation_data(POOLED)
    assert set(pools) == {"SUM", "MAX", "MED"}
    for op, pool in pools.items():
        assert len(pool) == 500 and len(_hashes(pool)) == 500
        assert (pool.root_ops == pool.root_ops[0]).all()
        assert pool_digest(pool) == pool_digest(pools2[op])
        for name, test in sets.items():
            assert not _hashes(pool) & _hashes(test), (op, name)
    other_seed = dataclasses.replace(POOLED, seed=1)
    assert pool_digest(evaluation_data(other_seed)[1]["SUM"]) != pool_digest(pools["SUM"])


def test_sampled_pools_keep_the_streams_repeats_and_mix_of_depths():
    # distinct pools lose flat expressions (only 1,000 three-operand SUM ones exist) as they
    # grow; a sampled pool is the sampler's draws, repeats kept, so its depths are the stream's
    cfg = DataConfig(ops=("SUM",), tree="single", min_args=3, train_size=6000, test_size=300)
    sets, distinct = evaluation_data(cfg)
    sampled_cfg = dataclasses.replace(cfg, pool_draw="sampled")
    _, sampled = evaluation_data(sampled_cfg)
    distinct, sampled = distinct["SUM"], sampled["SUM"]
    assert len(sampled) == 6000 and len(_hashes(sampled)) < 0.95 * 6000  # repeats kept
    assert not _hashes(sampled) & _hashes(sets["SUM"])  # still outside the test set
    assert pool_digest(evaluation_data(sampled_cfg)[1]["SUM"]) == pool_digest(sampled)
    stream = sample_examples(cfg, 20_000, np.random.default_rng(7), ops=("SUM",))
    flat = {
        name: float(np.mean(ex.depths == 1))
        for name, ex in (("stream", stream), ("sampled", sampled), ("distinct", distinct))
    }
    # the test set bans about a fifth of the flat expressions, the stream none of them
    assert abs(flat["sampled"] - flat["stream"]) < 0.08, flat
    assert flat["distinct"] < flat["stream"] - 0.15, flat
    names = [c.training_data for c in (cfg, sampled_cfg, dataclasses.replace(cfg, train_size=0))]
    assert names == [
        "6,000 distinct, 3 operands",
        "6,000 sampled, 3 operands",
        "fresh stream, single-operator trees, 3 operands",
    ]


def test_the_training_data_names_every_task_setting_that_is_not_the_default():
    # runs are pooled into one transition by mixture, training data and training: two tasks
    # that differ in any setting must never read as one
    assert DataConfig().training_data == "fresh stream"
    pool = DataConfig(tree="single", train_size=20_000, pool_draw="sampled")
    assert pool.training_data == "20,000 sampled"  # a pool's trees are single-operator ones
    named = {
        "modulus": (11, "20,000 sampled, mod 11"),
        "min_args": (3, "20,000 sampled, 3 operands"),
        "max_args": (5, "20,000 sampled, 2-5 operands"),
        "max_depth": (2, "20,000 sampled, depth 2"),
        "branch_prob": (0.5, "20,000 sampled, branching 0.5"),
        "median": ("lower", "20,000 sampled, lower median"),
        "chain_of_thought": (True, "20,000 sampled, chain of thought"),
        "holdout_min_leaves": (6, "20,000 sampled, held out from 6 leaves"),
        "weights": ((2.0, 1.0, 1.0), "20,000 sampled, weights 2:1:1"),
    }
    for knob, (value, words) in named.items():
        assert dataclasses.replace(pool, **{knob: value}).training_data == words, knob
    assert dataclasses.replace(pool, weights=(2.0, 2.0, 2.0)).training_data == "20,000 sampled"
    everything = dataclasses.replace(pool, holdout_min_leaves=0)
    assert everything.training_data == "20,000 sampled, every test expression held out"
    sets = make_test_sets(dataclasses.replace(everything, test_size=50))
    assert all(heldout_mask(everything, ex).all() for ex in sets.values())
    perm = DataConfig(family="perm", group_k=4, tree="single", min_args=3, modulus=10)
    assert perm.training_data == "fresh stream, single-operator trees, S_4, 3 operands"
    # every task knob of DataConfig is named or deliberately left out
    left_out = {"ops", "family", "seed", "test_size", "train_size", "pool_draw", "tree", "group_k"}
    assert {f.name for f in dataclasses.fields(DataConfig)} - left_out == set(named)


def test_sum_pool_is_the_same_alone_and_in_a_mixture():
    _, joint = evaluation_data(POOLED)
    _, alone = evaluation_data(dataclasses.replace(POOLED, ops=("SUM",)))
    assert np.array_equal(alone["SUM"].tokens, joint["SUM"].tokens)


def _stream(cfg, pools, chunk_steps=4):
    train = TrainConfig(batch_size=50, stream_chunk_steps=chunk_steps, length_buckets=0)
    return PoolStream(cfg, train, pools, cfg.ops)


def test_training_cycles_through_the_pool_in_reshuffled_epochs():
    cfg = dataclasses.replace(POOLED, ops=("SUM",))
    _, pools = evaluation_data(cfg)
    rows = np.concatenate([_stream(cfg, pools).batch(s).tokens for s in range(20)])  # 2 epochs
    first, second = rows[:500], rows[500:]
    assert _hashes_of(first) == _hashes_of(second) == _hashes(pools["SUM"])
    assert not np.array_equal(first, second)  # reshuffled


def _hashes_of(tokens) -> set[int]:
    return set(row_hashes(tokens).tolist())


def test_sum_examples_come_in_the_same_order_alone_and_in_a_mixture():
    _, pools = evaluation_data(POOLED)
    alone_cfg = dataclasses.replace(POOLED, ops=("SUM",))
    alone = np.concatenate([_stream(alone_cfg, pools).batch(s).tokens for s in range(4)])
    joint_batches = [_stream(POOLED, pools).batch(s) for s in range(24)]
    joint = np.concatenate([b.tokens[b.root_ops == OPERATORS.index("SUM")] for b in joint_batches])
    n = min(len(alone), len(joint))
    assert n >= 150
    assert np.array_equal(alone[:n], joint[:n])


def test_rows_index_the_pools_joined_in_operator_order():
    _, pools = evaluation_data(POOLED)
    stream = _stream(POOLED, pools)
    joined = Examples.concat([pools[op] for op in POOLED.ops])
    rows = np.random.default_rng(0).integers(0, len(joined), 200)
    taken = stream.take(rows)
    for field in ("tokens", "answers", "lengths", "root_ops", "node_values"):
        assert np.array_equal(getattr(taken, field), getattr(joined, field)[rows]), field
    assert np.array_equal(stream.lengths, joined.lengths)
    assert np.array_equal(stream.root_ops, joined.root_ops)
    for step in (0, 5, 13):
        assert np.array_equal(stream.batch(step).tokens, joined.tokens[stream.rows(step)])


def test_a_resumed_stream_gives_the_same_batches():
    _, pools = evaluation_data(POOLED)
    straight = _stream(POOLED, pools)
    expected = [straight.batch(s).tokens for s in range(30)]
    late = _stream(POOLED, pools)  # a resumed run: its first batch is step 17
    assert all(np.array_equal(late.batch(s).tokens, expected[s]) for s in range(17, 30))


def test_pool_accuracy_is_scored_on_pool_rows():
    cfg = tiny_config(data={"ops": ("SUM",), "tree": "single", "train_size": 300})
    sets, pools = evaluation_data(cfg.data)
    model = build_model(cfg.model, cfg.data, seed=0)
    on_pool = evaluate_set(model, pools["SUM"], cfg.data)  # the pool as a test set
    result = evaluate_set(model, sets["SUM"], cfg.data, pool=pools["SUM"])
    assert result.n_pool == min(300, cfg.data.test_size)
    head = evaluate_set(model, pools["SUM"], cfg.data, limit=result.n_pool)
    assert result.accuracy_pool == head.accuracy
    assert result.memorisation_gap == pytest.approx(result.accuracy_pool - result.accuracy_heldout)
    assert on_pool.n == 300


def test_pooled_run_records_its_pools_and_resumes_exactly(tmp_path, monkeypatch):
    cfg = tiny_config(
        data={"ops": ("SUM", "MAX"), "tree": "single", "train_size": 400},
        train={"steps": 60, "save_interval": 20, "eval_interval": 20},
    )
    ref = train(cfg, tmp_path / "ref", progress=False)
    saved = json.loads((tmp_path / "ref" / "config.json").read_text())
    assert saved["data"]["train_size"] == 400
    assert set(saved["pools"]) == {"SUM", "MAX"} and saved["pools"]["SUM"]["size"] == 400
    results = json.loads((tmp_path / "ref" / "results.json").read_text())
    assert sum(results["examples"].values()) == 60 * 64
    assert results["epochs"]["SUM"] == pytest.approx(results["examples"]["SUM"] / 400, abs=1e-3)
    assert ref.results["SUM"].accuracy_pool is not None

    train_interrupted(monkeypatch, cfg, tmp_path / "cut", at_step=45)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    a, b = (
        load_file(tmp_path / "ref" / "model.safetensors"),
        load_file(tmp_path / "cut" / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    resumed = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert resumed["examples"] == results["examples"]


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"train_size": -1}, "train_size must be in 1.."),
        ({"train_size": 10**9}, "train_size must be in 1.."),
        ({"train_size": 100, "tree": "mixed"}, "needs single-operator trees"),
        ({"train_size": 101, "max_depth": 1, "min_args": 2, "max_args": 2}, "more than the 100"),
        ({"train_size": 0, "pool_draw": "sampled"}, "pool_draw belongs to finite pools"),
        ({"pool_draw": "some"}, "pool_draw must be one of"),
    ],
)
def test_impossible_pool_sizes_are_config_errors(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        dataclasses.replace(POOLED, **changes)


def test_a_pool_that_cannot_be_filled_outside_the_test_set_says_so():
    # 100 flat two-operand SUM expressions exist; the test set holds most of them.
    cfg = dataclasses.replace(
        POOLED, ops=("SUM",), max_depth=1, min_args=2, max_args=2, train_size=90, test_size=200
    )
    with pytest.raises(ConfigError, match="found only .* distinct SUM expressions"):
        evaluation_data(cfg)


def test_transition_reads_pool_accuracy_and_the_memorisation_gap(tmp_path, capsys):
    from mechlistops.cli import main

    out = tmp_path / "pooled"
    argv = ["sweep", "--mixture", "SUM", "--mixture", "SUM,MAX", "--d-model", "8,16"]
    argv += ["--seeds", "1", "--tree", "single", "--train-size", "300", "--test-size", "100"]
    argv += ["--steps", "40", "--eval-interval", "20", "--save-interval", "20", "--n-layers", "1"]
    argv += ["--workers", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "sum_d8_s0" / "metrics.jsonl").read_text().splitlines()[-1])
    r = metrics["eval"]["SUM"]
    assert r["memorisation_gap"] == pytest.approx(r["accuracy_pool"] - r["accuracy_heldout"])
    capsys.readouterr()
    assert main(["transition", str(out), "--pool", "--bootstrap", "5"]) == 0
    printed = capsys.readouterr().out
    assert "memorisation gap (pool - held-out) of SUM in SUM+MAX, median by size:" in printed
    assert (out / "transitions_pool.json").is_file()
