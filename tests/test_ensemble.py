"""The batched ensemble trainer: each member equals its run trained alone (same seed, same
batches) to 1e-5, writes the same run directory, and resumes with either trainer."""

import dataclasses
import json

import pytest
import torch

from mechlistops import checkpoint as ckpt
from mechlistops import load_run
from mechlistops.ensemble import DevicePools, ensemble_key, stacked_inputs, train_ensemble
from mechlistops.pools import PoolStream, evaluation_data
from mechlistops.train import RunState, train
from tests.conftest import assert_same_weights, tiny_config


def tiny_config_with(cfg, **train_changes):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_changes))


# vmap warns when it falls back to a loop over the members (no batching rule for an op, as for
# the fused attention kernel on CPU): the ensemble must not.
pytestmark = [
    pytest.mark.filterwarnings("error::UserWarning"),
    pytest.mark.usefixtures("wide_adam_eps"),  # members held to runs trained alone
]

STEPS = {"steps": 30, "eval_interval": 10, "save_interval": 10, "warmup_steps": 5}


def _members():
    """Same shape; different seeds, mixtures, tree kinds, learning rates, decay and betas."""
    return [
        tiny_config(train={**STEPS, "seed": 0}),
        tiny_config(data={"ops": ("SUM", "MAX"), "seed": 1}, train={**STEPS, "seed": 1}),
        tiny_config(
            data={"ops": ("MIN", "MED"), "tree": "single", "seed": 2},
            train={**STEPS, "seed": 2, "lr": 1e-3, "weight_decay": 0.0, "beta2": 0.95},
        ),
    ]


def _files(run_dir):
    return sorted(p.name for p in run_dir.iterdir() if p.name != "analysis")


@pytest.mark.parametrize("loss", ["answer", "sequence"])
def test_members_equal_training_alone(tmp_path, loss):
    cfgs = [tiny_config_with(c, loss_on=loss) for c in _members()]
    assert len({ensemble_key(c) for c in cfgs}) == 1
    together = train_ensemble(
        [(c, tmp_path / f"ens{k}") for k, c in enumerate(cfgs)], progress=False
    )
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"alone{k}", progress=False)
        assert_same_weights(alone.model.state_dict(), together[k].model.state_dict())
        # the same files, loadable by load_run, with the same metrics at every evaluation
        assert _files(tmp_path / f"ens{k}") == _files(tmp_path / f"alone{k}")
        loaded = load_run(tmp_path / f"ens{k}")
        assert_same_weights(alone.model.state_dict(), loaded.model.state_dict())
        for a, b in zip(
            (tmp_path / f"alone{k}" / ckpt.METRICS).read_text().splitlines(),
            (tmp_path / f"ens{k}" / ckpt.METRICS).read_text().splitlines(),
        ):
            a, b = json.loads(a), json.loads(b)
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            for name, r in a["eval"].items():
                assert r["accuracy"] == pytest.approx(b["eval"][name]["accuracy"], abs=0.01)


@pytest.mark.parametrize("pools", [False, True])  # pools: each phase's pools on the device
def test_curriculum_members_equal_training_alone(tmp_path, pools):
    members = _pooled_members()[1:] if pools else _members()[:2]
    cfgs = [
        tiny_config_with(c, pretrain_ops=("MAX", "MED"), pretrain_steps=12, steps=18)
        for c in members
    ]
    together = train_ensemble([(c, tmp_path / f"e{k}") for k, c in enumerate(cfgs)], False)
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"a{k}", progress=False)
        assert_same_weights(alone.model.state_dict(), together[k].model.state_dict())


class Stop(Exception):
    pass


def test_interrupted_ensemble_resumes_alone_or_together(tmp_path, monkeypatch):
    cfgs = _members()[:2]
    reference = [train(c, tmp_path / f"ref{k}", progress=False) for k, c in enumerate(cfgs)]

    record = RunState.record

    def stop_after_20(self, step, *args):
        record(self, step, *args)
        if step == 20:
            raise Stop

    monkeypatch.setattr(RunState, "record", stop_after_20)
    dirs = [tmp_path / "m0", tmp_path / "m1"]
    with pytest.raises(Stop):
        train_ensemble(list(zip(cfgs, dirs)), progress=False)
    monkeypatch.setattr(RunState, "record", record)
    assert (dirs[0] / ckpt.STATE).is_file() and not (dirs[0] / ckpt.RESULTS).exists()

    resumed_alone = train(cfgs[0], dirs[0], resume=True, progress=False)
    assert_same_weights(reference[0].model.state_dict(), resumed_alone.model.state_dict())
    # member 1 never wrote its step-20 state (the stop came first): it resumes from step 10
    [resumed] = train_ensemble([(cfgs[1], dirs[1])], progress=False)
    assert_same_weights(reference[1].model.state_dict(), resumed.model.state_dict())


def test_looped_members_equal_training_alone(tmp_path):
    """One single-head block applied twice (the paper's later architecture): the tied
    Parameters stay tied and every member equals its run trained alone."""
    cfgs = [
        dataclasses.replace(
            c, model=dataclasses.replace(c.model, looped=True, n_layers=2, n_heads=1)
        )
        for c in _members()[:2]
    ]
    assert len({ensemble_key(c) for c in cfgs}) == 1
    together = train_ensemble([(c, tmp_path / f"e{k}") for k, c in enumerate(cfgs)], False)
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"a{k}", progress=False)
        assert_same_weights(alone.model.state_dict(), together[k].model.state_dict())
        loaded = load_run(tmp_path / f"e{k}").model
        assert loaded.blocks[1].attn.W_Q is loaded.blocks[0].attn.W_Q  # still one block
        assert_same_weights(loaded.state_dict(), alone.model.state_dict())


def _pooled_members():
    """Finite pools of different sizes and mixtures (so one member's pools are padded to the
    longest); the first member stops early, so the others go on gathering from pools stacked
    for a member that has left."""
    pooled, steps = {"tree": "single"}, STEPS
    return [
        tiny_config(
            data={**pooled, "ops": ("SUM",), "train_size": 300},
            train={**steps, "stop_patience": 1, "stop_delta": 1.0},
        ),
        tiny_config(
            data={**pooled, "ops": ("SUM", "MAX"), "train_size": 200, "seed": 1},
            train={**steps, "seed": 1},
        ),
        tiny_config(
            data={**pooled, "ops": ("MIN", "MED"), "train_size": 150, "seed": 2},
            train={**steps, "seed": 2, "lr": 1e-3},
        ),
    ]


@pytest.mark.parametrize("loss", ["answer", "sequence"])
def test_batches_gathered_from_pools_on_the_device_are_the_streams_own(loss):
    cfgs = [tiny_config_with(c, loss_on=loss, length_buckets=4) for c in _pooled_members()]
    streams = []
    for c in cfgs:
        _, pools = evaluation_data(c.data)
        streams.append(PoolStream(c.data, c.train, pools, c.data.ops))
    on_device = DevicePools(streams, "cpu")
    for step in (0, 7, 70):  # 70: past the end of the smallest pool's first epoch
        for members in ([0, 1, 2], [1, 2]):
            batches = [streams[k].batch(step) for k in members]
            expected = stacked_inputs(batches, cfgs[0], "cpu")
            rows = [streams[k].rows(step) for k in members]
            got = on_device.inputs(members, rows, cfgs[0], None)
            for theirs, mine in zip(expected, got):
                assert (mine is None) == (theirs is None)
                if mine is not None:
                    assert mine.dtype == theirs.dtype and torch.equal(mine, theirs)


@pytest.mark.parametrize("fits", [True, False])  # False: the pools do not fit on the device
def test_pooled_members_equal_training_alone(tmp_path, monkeypatch, fits):
    if not fits:

        def out_of_memory(*args):
            raise torch.OutOfMemoryError("CUDA out of memory")

        monkeypatch.setattr(DevicePools, "__init__", out_of_memory)
    cfgs = _pooled_members()
    assert len({ensemble_key(c) for c in cfgs}) == 1
    together = train_ensemble([(c, tmp_path / f"e{k}") for k, c in enumerate(cfgs)], False)
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"a{k}", progress=False)
        # rounding differences (vmapped against plain matmuls) grow through AdamW: up to 8e-5
        # here, with or without pools on the device; other rows (a data seed) move them 6e-2
        assert_same_weights(alone.model.state_dict(), together[k].model.state_dict(), atol=1e-4)
        a, e = (json.loads((tmp_path / f"{x}{k}" / ckpt.RESULTS).read_text()) for x in "ae")
        assert e["step"] == a["step"] and e["examples"] == a["examples"]
    steps = [json.loads((tmp_path / f"e{k}" / ckpt.RESULTS).read_text())["step"] for k in range(3)]
    assert steps == [20, 30, 30]  # the first left two evaluations in


def test_mismatched_runs_do_not_share_an_ensemble():
    looped = tiny_config(model={"looped": True, "n_layers": 2})
    assert ensemble_key(looped) != ensemble_key(tiny_config(model={"n_layers": 2}))
    assert ensemble_key(tiny_config()) != ensemble_key(tiny_config(model={"d_model": 16}))
    with pytest.raises(ValueError, match="ensemble_key"):
        train_ensemble([(tiny_config(), "a"), (tiny_config(model={"d_model": 16}), "b")])


def test_batches_made_by_worker_processes_are_the_streams_own(tmp_path):
    """ChunkWorkers: the same batches as the stream makes itself, from any starting chunk (a
    resume), and an ensemble fed by them trains to the same weights bit for bit."""
    import numpy as np

    from mechlistops.data import ChunkWorkers, TrainStream
    from mechlistops.errors import ConfigError

    cfg = tiny_config(data={"ops": ("SUM", "MAX", "MED")}, train={"stream_chunk_steps": 4})
    exclude = np.array([], dtype=np.uint64)
    workers = ChunkWorkers(2, ahead=2)
    try:
        for start in (0, 13):  # 13: chunk 3, as a run resumed there asks
            own = TrainStream(cfg.data, cfg.train, exclude, ("SUM", "MAX", "MED"))
            fed = workers.parallel(TrainStream(cfg.data, cfg.train, exclude, ("SUM", "MAX", "MED")))
            for step in range(start, start + 14):
                a, b = own.batch(step), fed.batch(step)
                for name in ("tokens", "answers", "root_ops", "lengths", "node_values"):
                    assert np.array_equal(getattr(a, name), getattr(b, name)), (step, name)
        pools = object()  # a stream of another kind passes through untouched
        assert workers.parallel(pools) is pools
    finally:
        workers.close()
    with pytest.raises(ConfigError, match="at least 1"):
        ChunkWorkers(0)

    cfgs = _members()[:2]
    plain = train_ensemble([(c, tmp_path / f"a{k}") for k, c in enumerate(cfgs)], False)
    fed = train_ensemble(
        [(c, tmp_path / f"b{k}") for k, c in enumerate(cfgs)], False, data_workers=2
    )
    for x, y in zip(plain, fed):
        a, b = x.model.state_dict(), y.model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
