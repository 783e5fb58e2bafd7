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
