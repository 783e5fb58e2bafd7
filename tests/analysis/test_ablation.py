"""Ablated forwards against a forward written out by hand without the component."""

import numpy as np
import pytest
import torch

from mechlistops.analysis.ablation import (
    Site,
    ablate,
    ablation_hooks,
    site_means,
    sites_for,
)
from mechlistops.config import DataConfig, ModelConfig
from mechlistops.data import make_test_sets, sample_examples
from mechlistops.errors import ConfigError
from mechlistops.model import build_model


def manual_forward(model, tokens, mlp_out=None, attn_out=None, head_out=None):
    """Residual stream by hand. `mlp_out`/`attn_out`: {layer: fn(clean_output) -> replacement};
    `head_out`: {(layer, head): fn(z_head) -> replacement z}."""
    cfg = model.cfg
    T = tokens.shape[1]
    resid = model.W_E[tokens] + model.W_pos[:T]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for layer, block in enumerate(model.blocks):
        x = block.ln1(resid)
        attn = block.attn
        q = torch.einsum("bpd,hde->bphe", x, attn.W_Q) + attn.b_Q
        k = torch.einsum("bpd,hde->bphe", x, attn.W_K) + attn.b_K
        v = torch.einsum("bpd,hde->bphe", x, attn.W_V) + attn.b_V
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / cfg.d_head**0.5
        pattern = scores.masked_fill(mask, float("-inf")).softmax(-1)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        for (lay, h), fn in (head_out or {}).items():
            if lay == layer:
                z = z.clone()
                z[:, :, h] = fn(z[:, :, h])
        out = torch.einsum("bqhe,hed->bqd", z, attn.W_O) + attn.b_O
        if attn_out and layer in attn_out:
            out = attn_out[layer](out)
        resid = resid + out
        m = block.mlp
        mlp = torch.relu(block.ln2(resid) @ m.W_in + m.b_in) @ m.W_out + m.b_out
        if mlp_out and layer in mlp_out:
            mlp = mlp_out[layer](mlp)
        resid = resid + mlp
    return model.ln_final(resid) @ model.W_U + model.b_U


@pytest.fixture(scope="module")
def setup():
    data = DataConfig()
    model = build_model(ModelConfig(n_layers=2, d_model=32, n_heads=4), data, seed=1)
    ex = sample_examples(data, 16, np.random.default_rng(0))
    length = int(ex.lengths.max())
    tokens = torch.tensor(ex.tokens[:, :length].astype(np.int64))
    return model, tokens


def _hooked(model, tokens, hooks):
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model(tokens)


def test_manual_forward_matches_model(setup):
    model, tokens = setup
    torch.testing.assert_close(manual_forward(model, tokens), model(tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [0, 1])
def test_zero_ablation_equals_forward_without_the_component(setup, layer):
    model, tokens = setup
    zero = {layer: torch.zeros_like}
    for component, manual in [("mlp", {"mlp_out": zero}), ("attn", {"attn_out": zero})]:
        got = _hooked(model, tokens, ablation_hooks(Site(component, (layer,)), "zero"))
        want = manual_forward(model, tokens, **manual)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    got = _hooked(model, tokens, ablation_hooks(Site("head", (layer,), 2), "zero"))
    want = manual_forward(model, tokens, head_out={(layer, 2): torch.zeros_like})
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, model(tokens), atol=1e-3)  # the ablation did something


def test_all_layers_mean_and_resample(setup):
    model, tokens = setup
    site = Site("mlp", (0, 1))
    # mean over the batch's positions, computed by hand
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    means = {n: cache[n].mean(dim=(0, 1)) for n in site.hook_names()}
    got = _hooked(model, tokens, ablation_hooks(site, "mean", means))
    want = manual_forward(
        model,
        tokens,
        mlp_out={
            layer: (lambda out, m=means[f"blocks.{layer}.hook_mlp_out"]: m.expand_as(out))
            for layer in (0, 1)
        },
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    perm = torch.randperm(len(tokens))
    got = _hooked(model, tokens, ablation_hooks(Site("attn", (1,)), "resample", perm=perm))
    want = manual_forward(model, tokens, attn_out={1: lambda out: out[perm]})
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_site_means_average_every_real_position(setup):
    model, _ = setup
    data = DataConfig(test_size=50)
    sets = {"MAX": make_test_sets(data)["MAX"]}
    name = "blocks.0.hook_mlp_out"
    got = site_means(model, sets, [name])[name]
    ex = sets["MAX"]
    total, count = 0, 0
    for row, n in zip(ex.tokens, ex.lengths):
        _, cache = model.run_with_cache(torch.tensor(row[:n].astype(np.int64))[None])
        total = total + cache[name][0].sum(0)
        count += n
    torch.testing.assert_close(got, total / count, atol=1e-5, rtol=1e-4)


def test_ablate_table_and_sites(setup):
    model, _ = setup
    sets = {k: v for k, v in make_test_sets(DataConfig(test_size=60)).items() if k != "mixture"}
    sites = sites_for(model, "mlp")
    assert [s.label for s in sites] == ["mlp L0", "mlp L1", "mlp all layers"]
    assert len(sites_for(model, "head", layer=1)) == 4
    df = ablate(model, sets, sites, mode="resample")
    assert len(df) == 3 * 3
    assert np.allclose(df.delta_acc, df.ablated_acc - df.clean_acc)
    with pytest.raises(ConfigError, match="does not exist"):
        sites_for(model, "attn", layer=5)
    with pytest.raises(ConfigError, match="--head needs"):
        sites_for(model, "mlp", head=0)


def test_same_length_permutation_keeps_lengths():
    from mechlistops.analysis.common import same_length_permutation

    lengths = torch.tensor([5, 7, 5, 9, 7, 5, 7])
    perm = same_length_permutation(lengths, torch.Generator().manual_seed(0))
    assert torch.equal(lengths[perm], lengths)
    assert sorted(perm.tolist()) == list(range(7))
    assert perm[3] == 3  # the only length-9 example maps to itself


def test_mean_ablation_averages_over_a_reference_batch_apart_from_the_evaluated_one(setup):
    from mechlistops.analysis.common import reference_batch
    from mechlistops.data import row_hashes

    model, _ = setup
    data = DataConfig(test_size=80)
    sets = {k: v for k, v in make_test_sets(data).items() if k != "mixture"}
    reference = reference_batch(data, sets, n=300)
    assert len(reference) == 300
    evaluated = np.concatenate([row_hashes(s.tokens) for s in sets.values()])
    assert not np.isin(row_hashes(reference.tokens), evaluated).any()
    site = sites_for(model, "mlp", layer=1)
    with pytest.raises(ConfigError, match="reference batch"):
        ablate(model, sets, site, mode="mean")
    got = ablate(model, sets, site, mode="mean", reference=reference)
    # the same as replacing the site by the reference batch's mean by hand
    mean = site_means(model, {"r": reference}, ["blocks.1.hook_mlp_out"])["blocks.1.hook_mlp_out"]
    ex = sets["MAX"]
    tokens = torch.as_tensor(ex.tokens[:, : ex.lengths.max()].astype(np.int64))
    hook = ("blocks.1.hook_mlp_out", lambda act, hook: mean.expand_as(act))
    with torch.no_grad(), model.hooks(fwd_hooks=[hook]):
        logits = model(tokens)
    acc = (logits[np.arange(len(ex)), ex.answer_pos].argmax(-1).numpy() == ex.answers).mean()
    row = got[(got.set == "MAX") & (got.site == "mlp L1")].iloc[0]
    assert row.ablated_acc == pytest.approx(acc)
    on_itself = ablate(model, sets, site, mode="mean", reference=sets["MAX"])
    assert not np.allclose(on_itself.ablated_loss, got.ablated_loss)  # the batch matters
