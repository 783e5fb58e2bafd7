"""Model building: sizes from configs, parameter counts, looped depth, the fast forward."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechlistops.config import DataConfig, ModelConfig
from mechlistops.data import sample_examples, seq_len
from mechlistops.errors import ConfigError
from mechlistops.forward import fast_logits
from mechlistops.listops import Vocab
from mechlistops.model import build_model, count_params, hooked_transformer_config_dict


def _expected_params(d_vocab, n_ctx, d, n_layers, n_heads, d_head, d_mlp):
    attn = 4 * n_heads * d * d_head + 3 * n_heads * d_head + d
    mlp = 2 * d * d_mlp + d_mlp + d
    block = attn + mlp + 4 * d  # two LayerNorms
    embed = d_vocab * d + n_ctx * d + d * d_vocab + d_vocab
    return embed + n_layers * block + 2 * d, n_layers * block + 2 * d


@pytest.mark.parametrize("n_layers, d_model, n_heads, d_mlp", [(1, 32, 2, None), (2, 48, 3, 100)])
def test_parameter_count_matches_formula(n_layers, d_model, n_heads, d_mlp):
    data = DataConfig()
    cfg = ModelConfig(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_mlp=d_mlp)
    model = build_model(cfg, data)
    total, no_embed = _expected_params(
        len(Vocab(10)),
        seq_len(data),
        d_model,
        n_layers,
        n_heads,
        d_model // n_heads,
        d_mlp or 4 * d_model,
    )
    assert count_params(model) == {"n_params": total, "n_params_no_embed": no_embed}
    assert model.cfg.d_vocab == len(Vocab(10)) and model.cfg.n_ctx == seq_len(data)


def test_looped_model_shares_one_block_and_keeps_hook_names():
    data = DataConfig()
    looped = build_model(ModelConfig(n_layers=3, looped=True), data)
    plain = build_model(ModelConfig(n_layers=1), data)
    assert count_params(looped)["n_params_no_embed"] == count_params(plain)["n_params_no_embed"]
    assert looped.blocks[2].mlp.W_in is looped.blocks[0].mlp.W_in
    names = set(looped.hook_dict)
    assert {f"blocks.{layer}.hook_resid_post" for layer in range(3)} <= names
    # a gradient step keeps the layers identical
    tokens = torch.tensor(
        sample_examples(data, 4, np.random.default_rng(0)).tokens[:, :20], dtype=torch.long
    )
    looped(tokens).sum().backward()
    torch.optim.SGD(looped.parameters(), lr=0.1).step()
    assert torch.equal(looped.blocks[1].attn.W_Q, looped.blocks[0].attn.W_Q)


def test_looped_checkpoint_loads_into_plain_hooked_transformer(tmp_path):
    data = DataConfig()
    model = build_model(ModelConfig(n_layers=2, looped=True), data, seed=1)
    path = tmp_path / "w.safetensors"
    save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, path)
    plain = HookedTransformer(
        HookedTransformerConfig(
            **hooked_transformer_config_dict(ModelConfig(n_layers=2, looped=True), data)
        )
    )
    plain.load_state_dict(load_file(path))
    tokens = torch.tensor(
        sample_examples(data, 8, np.random.default_rng(0)).tokens[:, :30], dtype=torch.long
    )
    torch.testing.assert_close(plain(tokens), model(tokens))


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model(ModelConfig(), DataConfig(), seed=7)
    assert torch.equal(before, torch.get_rng_state())
    b = build_model(ModelConfig(), DataConfig(), seed=7)
    c = build_model(ModelConfig(), DataConfig(), seed=8)
    assert torch.equal(a.W_E, b.W_E) and not torch.equal(a.W_E, c.W_E)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(n_layers=1),
        ModelConfig(n_layers=2, act_fn="gelu_new", normalization="RMS"),
        ModelConfig(n_layers=3, looped=True, normalization=None, act_fn="silu", d_head=8),
    ],
)
def test_fast_forward_equals_hooked_transformer(cfg):
    data = DataConfig(ops=("SUM", "MAX", "MED"))
    model = build_model(cfg, data, seed=3)
    ex = sample_examples(data, 64, np.random.default_rng(0))
    tokens = torch.tensor(ex.tokens[:, : ex.lengths.max()], dtype=torch.long)
    ref = model(tokens)
    torch.testing.assert_close(fast_logits(model, tokens), ref, atol=1e-5, rtol=1e-5)
    pos = torch.tensor(ex.answer_pos)[:, None]
    at_answer = ref.gather(1, pos[..., None].expand(-1, -1, ref.shape[-1]))
    torch.testing.assert_close(fast_logits(model, tokens, pos), at_answer, atol=1e-5, rtol=1e-5)


def test_fast_forward_gradients_equal_hooked_transformer():
    data = DataConfig()
    model = build_model(ModelConfig(n_layers=2), data, seed=0)
    ex = sample_examples(data, 32, np.random.default_rng(0))
    tokens = torch.tensor(ex.tokens[:, : ex.lengths.max()], dtype=torch.long)
    pos, answers = torch.tensor(ex.answer_pos), torch.tensor(ex.answers)
    ref_loss = torch.nn.functional.cross_entropy(model(tokens)[torch.arange(32), pos], answers)
    ref = torch.autograd.grad(ref_loss, list(model.parameters()))
    loss = torch.nn.functional.cross_entropy(
        fast_logits(model, tokens, pos[:, None])[:, 0], answers
    )
    got = torch.autograd.grad(loss, list(model.parameters()))
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


def test_sizes_that_do_not_divide_are_rejected():
    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(d_model=30, n_heads=4)
    ModelConfig(d_model=30, n_heads=4, d_head=8)  # explicit d_head is fine


def test_transformer_lens_is_imported_in_one_module():
    """Moving to TransformerLens 4.x touches mechlistops/tl.py only."""
    import ast
    from pathlib import Path

    import mechlistops

    root = Path(mechlistops.__file__).parent
    importers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] == "transformer_lens" for n in names):
                importers.add(path.relative_to(root).as_posix())
    assert importers == {"tl.py"}


def test_runs_open_without_hugging_face_datasets(tiny_run):
    """Where `datasets` (and pyarrow) are missing, as on the GPU machine, mechlistops still
    imports TransformerLens and opens runs (mechlistops/tl.py stands in for `datasets`)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('datasets', 'pyarrow'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from mechlistops.checkpoint import load_run\n"
        f"run = load_run({str(tiny_run)!r})\n"
        "print(type(run.model).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "HookedTransformer"
