"""Direct logit attribution sums to the logit; usage ratios match a by-hand computation."""

import numpy as np
import pytest
import torch

from mechlistops.analysis.attribution import direct_logit_attribution, usage_ratios
from mechlistops.config import DataConfig, ModelConfig
from mechlistops.data import sample_examples
from mechlistops.model import build_model


@pytest.mark.parametrize("normalization", ["LN", "RMS", None])
def test_dla_terms_sum_to_the_answer_logit(normalization):
    data = DataConfig()
    model = build_model(
        ModelConfig(n_layers=2, d_model=32, n_heads=4, normalization=normalization), data, seed=2
    )
    ex = sample_examples(data, 6, np.random.default_rng(0))
    for i in range(len(ex)):
        one = ex.subset(slice(i, i + 1))
        df = direct_logit_attribution(model, {"x": one}, modulus=10)
        tokens = torch.as_tensor(one.tokens[:, : one.lengths[0]].astype(np.int64))
        with torch.no_grad():
            logits = model(tokens)[0, one.answer_pos[0]]
        assert df["logit"].sum() == pytest.approx(float(logits[one.answers[0]]), abs=1e-4)
        wrong = logits[:10].clone()
        wrong[one.answers[0]] = -torch.inf
        diff = logits[one.answers[0]] - wrong.max()
        assert df["logit_diff"].sum() == pytest.approx(float(diff), abs=1e-4)
    names = list(df.component)
    assert names[0] == "embed" and names[-1] == "bias" and "L1 H3" in names and "L0 mlp" in names


def test_usage_ratios_by_hand():
    data = DataConfig()
    model = build_model(ModelConfig(n_layers=2, d_model=32, n_heads=4), data, seed=0)
    ex = sample_examples(data, 20, np.random.default_rng(1))
    df = usage_ratios(model, {"x": ex})
    assert len(df) == 2 * 2 * 2
    want_answer, want_all = [], []
    for i in range(len(ex)):
        n = ex.lengths[i]
        tokens = torch.as_tensor(ex.tokens[i : i + 1, :n].astype(np.int64))
        _, cache = model.run_with_cache(tokens)
        r = cache["blocks.1.hook_mlp_out"][0].norm(dim=-1) / cache["blocks.1.hook_resid_mid"][
            0
        ].norm(dim=-1)
        want_answer.append(float(r[ex.answer_pos[i]]))
        want_all.extend(r.tolist())
    got = df.set_index(["layer", "sublayer", "where"])["ratio"]
    assert got[(1, "mlp", "answer")] == pytest.approx(np.mean(want_answer), rel=1e-4)
    assert got[(1, "mlp", "all")] == pytest.approx(np.mean(want_all), rel=1e-4)


def test_attribution_patching_is_exact_where_the_metric_is_linear():
    """Without a final norm the logits are linear in the last MLP's output, so the attribution
    patching score equals the real effect of patching that output."""
    from mechlistops.analysis.attribution import attribution_patching
    from mechlistops.analysis.common import same_length_permutation

    data = DataConfig()
    model = build_model(
        ModelConfig(n_layers=2, d_model=32, n_heads=4, normalization=None), data, seed=3
    )
    ex = sample_examples(data, 200, np.random.default_rng(0))
    df = attribution_patching(model, {"x": ex}, modulus=10, seed=0)
    assert len(df) == 2 * (4 + 1)
    score = df.set_index("site").loc["L1 mlp", "score"]

    tokens = torch.as_tensor(ex.tokens[:, : ex.lengths.max()].astype(np.int64))
    pos, answers = torch.as_tensor(ex.answer_pos), torch.as_tensor(ex.answers)
    lengths = torch.as_tensor(ex.lengths)
    perm = same_length_permutation(lengths, torch.Generator().manual_seed(0))
    r = torch.arange(len(pos))
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens)
        wrong = clean[r, pos, :10].clone()
        wrong[r, answers] = -torch.inf
        runner = wrong.argmax(-1)
        corrupt = cache["blocks.1.hook_mlp_out"][perm]
        with model.hooks(fwd_hooks=[("blocks.1.hook_mlp_out", lambda act, hook: corrupt)]):
            patched = model(tokens)

    def metric(logits):
        return logits[r, pos, answers] - logits[r, pos, runner]

    assert score == pytest.approx(float((metric(patched) - metric(clean)).mean()), abs=1e-4)
    assert abs(score) > 1e-3  # the patch does something


def test_dla_agrees_with_transformer_lens_decompose_resid_and_logit_attrs():
    """Cross-check against TransformerLens's own tools on the same model: fold the LayerNorms
    into the weights (`process_weights_`, no centring, so the residual pieces are unchanged),
    decompose the final residual stream with `decompose_resid` / `stack_head_results` without
    the final LayerNorm (`logit_attrs` applies it, frozen scale and all), and compare every
    component's direct effect on the answer's logit and on answer minus runner-up."""
    import copy

    data = DataConfig()
    model = build_model(ModelConfig(n_layers=2, d_model=32, n_heads=4), data, seed=2)
    ex = sample_examples(data, 400, np.random.default_rng(0))
    length = np.bincount(ex.lengths).argmax()  # one length: one answer position for TL's slice
    ex = ex.subset(np.flatnonzero(ex.lengths == length)[:24])
    pos = int(ex.answer_pos[0])
    ours = direct_logit_attribution(model, {"x": ex}, modulus=10).set_index("component")

    folded = copy.deepcopy(model)
    folded.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    tokens = torch.as_tensor(ex.tokens[:, :length].astype(np.int64))
    answers = torch.as_tensor(ex.answers)
    with torch.no_grad():
        logits, cache = folded.run_with_cache(tokens)
        wrong = logits[:, pos, :10].clone()
        wrong[torch.arange(len(ex)), answers] = -torch.inf
        runner = wrong.argmax(-1)
        stack, labels = cache.decompose_resid(
            layer=-1, mode="all", apply_ln=False, pos_slice=pos, return_labels=True
        )
        heads, head_labels = cache.stack_head_results(
            layer=-1, apply_ln=False, pos_slice=pos, return_labels=True
        )
        tl = {}
        for name, s in (("logit", None), ("logit_diff", runner)):
            parts = cache.logit_attrs(stack, tokens=answers, incorrect_tokens=s, pos_slice=pos)
            per_head = cache.logit_attrs(heads, tokens=answers, incorrect_tokens=s, pos_slice=pos)
            tl[name] = dict(zip(labels + head_labels, torch.cat([parts, per_head]).mean(-1)))
    for name in ("logit", "logit_diff"):
        got, want = ours[name], {k: float(v) for k, v in tl[name].items()}
        assert got["embed"] == pytest.approx(want["embed"] + want["pos_embed"], abs=1e-5)
        for layer in range(2):
            heads_sum = sum(got[f"L{layer} H{h}"] for h in range(4)) + got[f"L{layer} attn b_O"]
            assert heads_sum == pytest.approx(want[f"{layer}_attn_out"], abs=1e-5)
            assert got[f"L{layer} mlp"] == pytest.approx(want[f"{layer}_mlp_out"], abs=1e-5)
            for h in range(4):
                assert got[f"L{layer} H{h}"] == pytest.approx(want[f"L{layer}H{h}"], abs=1e-5)


def test_exact_patching_through_transformer_lens_matches_attribution_where_linear():
    """`activation_patching` (transformer_lens.patching, noising, the same corruptions) equals
    the attribution patching score where the metric is linear in the site (the last MLP of a
    model without a final norm), and differs where it is not."""
    from mechlistops.analysis.attribution import activation_patching, attribution_patching

    data = DataConfig()
    model = build_model(
        ModelConfig(n_layers=2, d_model=32, n_heads=4, normalization=None), data, seed=3
    )
    ex = sample_examples(data, 300, np.random.default_rng(0))
    sets = {"x": ex}
    scores = attribution_patching(model, sets, modulus=10, seed=4, batch_size=128)
    effects = activation_patching(model, sets, modulus=10, seed=4, batch_size=128)
    both = scores.merge(effects, on=["set", "site"]).set_index("site")
    assert len(both) == 2 * (4 + 1)
    assert both.loc["L1 mlp", "effect"] == pytest.approx(both.loc["L1 mlp", "score"], abs=1e-4)
    assert abs(both.loc["L1 mlp", "effect"]) > 1e-3
    nonlinear = (both.score - both.effect).abs().drop("L1 mlp")
    assert nonlinear.max() > 1e-3  # elsewhere the linear estimate is only an estimate
