"""The vectorised generator against the recursive reference evaluator, tokenisation, splits."""

import numpy as np
import pytest

from mechlistops.config import LISTOPS_OPERATORS, OPERATORS, DataConfig, TrainConfig
from mechlistops.data import (
    TrainStream,
    excluded_hashes,
    heldout_mask,
    make_test_sets,
    sample_examples,
    seq_len,
)
from mechlistops.listops import Node, Vocab, count_leaves, evaluate, parse, ssum_permutation


def _stream(batch_size: int, chunk_steps: int, buckets: int = 0) -> TrainConfig:
    """The TrainConfig fields a training stream reads."""
    return TrainConfig(
        batch_size=batch_size, stream_chunk_steps=chunk_steps, length_buckets=buckets
    )


def _reference(cfg, ex):
    vocab, perm = Vocab(cfg.modulus), ssum_permutation(cfg.modulus, cfg.seed)
    trees = [parse(e, cfg.modulus) for e in ex.expressions(vocab)]
    return trees, np.array([evaluate(t, cfg.modulus, cfg.median, perm) for t in trees])


@pytest.mark.parametrize(
    "cfg",
    [
        DataConfig(ops=LISTOPS_OPERATORS),
        DataConfig(ops=LISTOPS_OPERATORS, tree="single", median="lower", seed=5),
        DataConfig(ops=("SUM", "MED", "NADD"), modulus=7, max_args=5, min_args=1, max_depth=4),
        DataConfig(ops=("SSUM", "PROD", "MIN"), modulus=36, branch_prob=0.6),
        DataConfig(ops=("MAX", "MED"), modulus=2, max_depth=1, max_args=4),
    ],
)
def test_answers_match_reference_evaluator(cfg):
    ex = sample_examples(cfg, 3000, np.random.default_rng(1))
    trees, answers = _reference(cfg, ex)
    np.testing.assert_array_equal(ex.answers, answers)
    np.testing.assert_array_equal(ex.depths, [t.depth for t in trees])
    np.testing.assert_array_equal(ex.n_leaves, [count_leaves(t) for t in trees])
    assert ex.lengths.max() <= seq_len(cfg)
    assert ex.depths.max() == cfg.max_depth  # every depth occurs in 3000 draws


def test_full_trees_reach_seq_len():
    cfg = DataConfig(min_args=3, max_args=3, branch_prob=1.0, chain_of_thought=True)
    ex = sample_examples(cfg, 10, np.random.default_rng(0))
    assert (ex.lengths == seq_len(cfg)).all()


def test_single_operator_trees_and_weights():
    cfg = DataConfig(ops=("SUM", "MAX"), weights=(3, 1), tree="single")
    ex = sample_examples(cfg, 4000, np.random.default_rng(0))
    vocab = Vocab(10)
    for row, n in zip(ex.tokens[:200], ex.lengths[:200]):
        ops = {vocab.tokens[t] for t in row[:n] if vocab.tokens[t].startswith("[")}
        assert len(ops) == 1
    frac_sum = (ex.root_ops == OPERATORS.index("SUM")).mean()
    assert 0.72 < frac_sum < 0.78


def test_token_round_trip_and_sequence_layout():
    cfg = DataConfig(ops=LISTOPS_OPERATORS)
    vocab = Vocab(cfg.modulus)
    ex = sample_examples(cfg, 500, np.random.default_rng(2))
    for row, n, a, pos in zip(ex.tokens, ex.lengths, ex.answers, ex.answer_pos):
        text = vocab.decode(row[:n])
        assert vocab.encode(text) == list(row[:n])
        assert text.startswith("<bos> [") and text.endswith(f"= {a} <eos>")
        assert row[pos] == vocab.equals and row[pos + 1] == a
        assert (row[n:] == vocab.pad).all()


def test_node_values_label_every_subtree():
    """At a `]` the recorded value is the value of the subtree it closes; at a value token,
    the value itself; at `=` the answer."""
    cfg = DataConfig(ops=LISTOPS_OPERATORS)
    vocab, perm = Vocab(10), ssum_permutation(10, 0)
    ex = sample_examples(cfg, 300, np.random.default_rng(3))
    for row, vals, ops, n in zip(ex.tokens, ex.node_values, ex.node_ops, ex.lengths):
        stack = []
        for i in range(1, n - 3):
            word = vocab.tokens[row[i]]
            if word.startswith("["):
                stack.append(Node(word[1:], []))
                assert OPERATORS[ops[i]] == word[1:]
            elif word == "]":
                node = stack.pop()
                assert vals[i] == evaluate(node, 10, "listops", perm)
                if stack:
                    stack[-1].args.append(node)
            else:
                assert vals[i] == int(word)
                stack[-1].args.append(int(word))
        assert vals[n - 3] == row[n - 2]  # `=` carries the answer


def test_chain_of_thought_rewrites_one_level_at_a_time():
    cfg = DataConfig(chain_of_thought=True, ops=LISTOPS_OPERATORS)
    vocab, perm = Vocab(10), ssum_permutation(10, 0)
    ex = sample_examples(cfg, 500, np.random.default_rng(4))
    for row, n, depth, a in zip(ex.tokens, ex.lengths, ex.depths, ex.answers):
        parts = vocab.decode(row[1 : n - 1]).split(" = ")
        assert len(parts) == depth + 1 and parts[-1] == str(a)
        for expr in parts[:-1]:
            assert evaluate(parse(expr), 10, "listops", perm) == a
        depths = [parse(e).depth for e in parts[:-1]]
        assert depths == list(range(depth, 0, -1))


def test_deterministic_from_seed():
    cfg = DataConfig()
    a, b = make_test_sets(cfg), make_test_sets(cfg)
    for k in a:
        np.testing.assert_array_equal(a[k].tokens, b[k].tokens)
    c = make_test_sets(DataConfig(seed=1))
    assert not np.array_equal(a["SUM"].tokens, c["SUM"].tokens)
    # an op's test set does not depend on the mixture it sits in
    d = make_test_sets(DataConfig(ops=("SUM",)))
    np.testing.assert_array_equal(a["SUM"].tokens, d["SUM"].tokens)


@pytest.mark.parametrize("holdout_min_leaves", [0, 4])
def test_train_stream_never_holds_heldout_test_expressions(holdout_min_leaves):
    cfg = DataConfig(ops=("SUM", "MAX"), max_depth=2, holdout_min_leaves=holdout_min_leaves)
    sets = make_test_sets(cfg)
    vocab = Vocab(10)
    held = set()
    for ex in sets.values():
        held |= {e for e, h in zip(ex.expressions(vocab), heldout_mask(cfg, ex)) if h}
    if holdout_min_leaves == 0:
        assert len(held) == len({e for ex in sets.values() for e in ex.expressions(vocab)})
    stream = TrainStream(cfg, _stream(256, 8), excluded_hashes(cfg, sets))
    train = set()
    for step in range(40):
        batch = stream.batch(step)
        assert len(batch) == 256
        train |= set(batch.expressions(vocab))
    assert not train & held
    # the filter is doing work: the raw sampler does produce held-out expressions
    raw = sample_examples(cfg, 256 * 40, np.random.default_rng(0))
    assert set(raw.expressions(vocab)) & held


def test_train_stream_batches_depend_only_on_step():
    cfg = DataConfig()
    exclude = excluded_hashes(cfg, make_test_sets(cfg))
    a = TrainStream(cfg, _stream(32, 4), exclude)
    b = TrainStream(cfg, _stream(32, 4), exclude)
    seq_a = [a.batch(s).tokens for s in range(10)]
    seq_b = [b.batch(s).tokens for s in (9, 3, 0, 5, 1, 2, 4, 6, 7, 8)]
    order = (9, 3, 0, 5, 1, 2, 4, 6, 7, 8)
    for s, tokens in zip(order, seq_b):
        np.testing.assert_array_equal(seq_a[s], tokens)
    assert not np.array_equal(seq_a[0], seq_a[1])


def test_length_buckets_reorder_a_chunk_without_changing_it():
    cfg = DataConfig()
    exclude = excluded_hashes(cfg, make_test_sets(cfg))
    plain = TrainStream(cfg, _stream(64, 32), exclude)
    bucketed = TrainStream(cfg, _stream(64, 32, buckets=8), exclude)
    a = [plain.batch(s) for s in range(32)]
    b = [bucketed.batch(s) for s in range(32)]

    def rows(batches):
        return sorted(map(bytes, np.concatenate([x.tokens for x in batches])))

    assert rows(a) == rows(b)

    def padded(batches):
        return np.mean([x.lengths.max() for x in batches])

    assert padded(b) < 0.7 * padded(a)
    spread = [x.lengths.max() - x.lengths.min() for x in b]
    assert np.median(spread) <= 3


@pytest.mark.parametrize(
    "cfg",
    [
        DataConfig(ops=LISTOPS_OPERATORS, seed=3, test_size=300),  # SSUM's relabelling too
        DataConfig(ops=("SUM", "MAX", "MED"), modulus=11, min_args=3, tree="single"),
        DataConfig(family="perm", ops=("PRD", "SGN", "PNT"), tree="single", group_k=4),
    ],
)
def test_expressions_parsed_from_text_lay_out_as_the_sampler_does(cfg):
    """`examples_from_trees` (what `eval --file` and `--expr` score) gives each test expression,
    read back from its text, the sampler's own row: tokens, node values and operators at
    every position, answer, root operator, depth and leaves."""
    from mechlistops.data import examples_from_trees
    from mechlistops.listops import Vocab, parse

    vocab = Vocab.of(cfg)
    for name, ex in make_test_sets(cfg).items():
        trees = [parse(t, cfg.modulus, vocab.group) for t in ex.expressions(vocab)]
        got = examples_from_trees(trees, cfg, width=ex.tokens.shape[1])
        assert got.tokens.shape == ex.tokens.shape
        for f in ("lengths", "prompt_len", "answers", "root_ops", "depths", "n_leaves"):
            assert (getattr(got, f) == getattr(ex, f)).all(), (name, f)
        inside = np.arange(ex.tokens.shape[1])[None, :] < ex.lengths[:, None]
        for f in ("tokens", "node_values", "node_ops"):  # past the end: padding, unread
            assert (getattr(got, f)[inside] == getattr(ex, f)[inside]).all(), (name, f)
        assert (got.tokens[~inside] == vocab.pad).all()
    assert examples_from_trees(trees[:2], cfg).tokens.shape[1] == got.lengths[:2].max()
