"""The permutation family: S_k itself, its operators, its data, and the complexity proxy."""

import itertools
import json

import numpy as np
import pytest

from mechlistops import groups
from mechlistops.cli import main
from mechlistops.complexity import STUB, fit_power_law, proxy, solver
from mechlistops.config import (
    FAMILIES,
    LISTOPS_OPERATORS,
    PERM_OPERATORS,
    DataConfig,
    RunConfig,
)
from mechlistops.data import make_test_sets, sample_examples
from mechlistops.errors import ConfigError, ParseError
from mechlistops.listops import Vocab, evaluate, parse, ssum_permutation
from mechlistops.pools import make_pool
from tests.conftest import tiny_config


@pytest.fixture(params=[3, 4, 5])
def group(request):
    return groups.symmetric_group(request.param)


def test_config_lists_the_registered_operators():
    assert PERM_OPERATORS == groups.PERM_OPERATORS
    assert DataConfig().ops == ("SUM", "MAX", "MED")  # the ListOps default is unchanged
    assert DataConfig(family="perm").ops == ("PRD", "SGN", "PNT")


# ----------------------------------------------------------------------------- the group
def test_group_axioms(group):
    t, n, e = group.table, len(group), group.identity
    assert n == {3: 6, 4: 24, 5: 120}[group.k]
    assert group.names[e] == "".join(map(str, range(group.k)))  # id 0 is the identity
    assert (t[e] == np.arange(n)).all() and (t[:, e] == np.arange(n)).all()
    assert (t[np.arange(n), group.inverse] == e).all()
    assert (t[group.inverse, np.arange(n)] == e).all()
    a, b, c = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    assert (t[t[a, b], c] == t[a, t[b, c]]).all()  # associativity, every triple
    # every row and column of a group table is a permutation of the elements
    assert all(len(set(row)) == n for row in t) and all(len(set(col)) == n for col in t.T)


def test_sign_is_a_homomorphism(group):
    t, s = group.table, group.sign
    a, b = np.meshgrid(np.arange(len(group)), np.arange(len(group)), indexing="ij")
    assert (s[t[a, b]] == (s[a] + s[b]) % 2).all()
    assert s.sum() == len(group) // 2  # the alternating group is half of S_k
    assert s[group.swap01] == 1 and s[group.identity] == 0


def test_subgroups_are_subgroups(group):
    for sub in (group.cyclic, group.stabiliser):
        members = set(sub.tolist())
        assert group.identity in members
        assert all(int(group.table[a, b]) in members for a in members for b in members)
    assert len(group.cyclic) == group.k
    assert len(group.stabiliser) == len(group) // group.k
    # r^j sends 0 to j
    assert [group.elements[p][0] for p in group.rotation_power] == list(range(group.k))


# ----------------------------------------------------------------------------- operators
S3 = groups.symmetric_group(3)
S4 = groups.symmetric_group(4)


@pytest.mark.parametrize(
    "g, text, answer",
    [
        (S3, "[PRD 102 021 ]", "120"),  # apply 021 first: 0->0->1, 1->2->2, 2->1->0
        (S3, "[PRD 021 102 ]", "201"),  # the other order: S_3 is not abelian
        (S3, "[PRD 120 120 120 ]", "012"),  # a 3-cycle cubed
        (S3, "[PRD 120 [PRD 102 021 ] ]", "201"),  # 120 composed with 120
        (S3, "[SGN 102 021 ]", "012"),  # two transpositions: even
        (S3, "[SGN 120 102 ]", "102"),  # even times odd: odd, shown as the swap 102
        (S3, "[PNT 120 021 ]", "120"),  # 0 -> 0 (021) -> 1 (120): r^1
        (S3, "[PNT 021 120 ]", "201"),  # 0 -> 1 -> 2: r^2 = 201
        (S3, "[CYC 120 120 ]", "201"),  # r r = r^2
        (S3, "[CYC 120 201 ]", "012"),  # r r^2 = identity
        (S3, "[BLK 102 102 ]", "012"),  # the stabiliser of 2 in S_3 is {012, 102}
        (S4, "[BLK 1023 0213 ]", "1203"),  # S_3 on the first three points of S_4
        (S4, "[PNT 1230 1230 1230 ]", "3012"),  # 0 -> 1 -> 2 -> 3: r^3
    ],
)
def test_worked_examples(g, text, answer):
    assert g.names[evaluate(parse(text, group=g), group=g)] == answer


def test_shuffled_table_is_the_product_under_relabelling():
    p = ssum_permutation(len(S3), seed=5)
    inv = np.argsort(p)
    for a, b in itertools.product(range(6), repeat=2):
        got = evaluate(parse(f"[SPRD {S3.names[a]} {S3.names[b]} ]", group=S3), perm=p, group=S3)
        assert got == p[S3.table[inv[a], inv[b]]]


def test_subgroup_operator_refuses_an_operand_outside_its_subgroup():
    with pytest.raises(ParseError, match="not in it"):
        evaluate(parse("[BLK 012 021 ]", group=S3), group=S3)  # 021 moves the last point


@pytest.mark.parametrize(
    "text, message",
    [
        ("[PRD 012 0123 ]", "not an element of S_3"),
        ("[PRD 012 3 ]", "not an element of S_3"),
        ("[SUM 012 021 ]", "unknown operator '\\[SUM' \\(word 1\\); S_3 has PRD"),
        ("[PRD 012 021", "never closed"),
    ],
)
def test_bad_permutation_expressions(text, message):
    with pytest.raises(ParseError, match=message):
        parse(text, group=S3)


# ----------------------------------------------------------------------------- the data
def _matrix(name: str) -> np.ndarray:
    """Permutation matrix M with M[g(i), i] = 1, so M_a @ M_b is the matrix of a b."""
    g = [int(c) for c in name]
    m = np.zeros((len(g), len(g)), dtype=int)
    m[g, np.arange(len(g))] = 1
    return m


def _oracle(words: list[str], k: int, relabel: list[str]) -> str:
    """An evaluator written apart from mechlistops.groups: permutation matrices, determinants
    for the sign, the first column for the image of 0."""
    names = ["".join(map(str, p)) for p in itertools.permutations(range(k))]
    pos = 0

    def name_of(m: np.ndarray) -> str:
        return "".join(str(int(np.argmax(m[:, i]))) for i in range(k))

    def rot(j: int) -> str:
        return "".join(str((i + j) % k) for i in range(k))

    def node() -> np.ndarray:
        nonlocal pos
        word = words[pos]
        pos += 1
        if not word.startswith("["):
            return _matrix(word)
        op, args = word[1:], []
        while words[pos] != "]":
            args.append(node())
        pos += 1
        if op == "SPRD":  # relabel[i] is the name element i is shown as
            args = [_matrix(names[relabel.index(name_of(m))]) for m in args]
        prod = np.eye(k, dtype=int)
        for m in args:
            prod = prod @ m
        if op == "SGN":
            return _matrix(names[0] if round(np.linalg.det(prod)) == 1 else "10" + names[0][2:])
        if op == "PNT":
            return _matrix(rot(int(np.argmax(prod[:, 0]))))
        if op == "SPRD":
            return _matrix(relabel[names.index(name_of(prod))])
        return prod

    return name_of(node())


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("op", PERM_OPERATORS)
def test_generator_agrees_with_an_independent_evaluator(k, op):
    cfg = DataConfig(family="perm", group_k=k, ops=(op,), tree="single", seed=2)
    ex = sample_examples(cfg, 300, np.random.default_rng(0))
    vocab = Vocab.of(cfg)
    g = groups.symmetric_group(k)
    relabel = [g.names[i] for i in ssum_permutation(len(g), cfg.seed)]
    for text, answer in zip(ex.expressions(vocab), ex.answers):
        assert _oracle(text.split(), k, relabel) == vocab.tokens[answer], text
    if op in ("CYC", "BLK"):  # operands stay in the subgroup
        sub = groups.domain(g, op)
        assert np.isin(ex.answers, sub).all()


def test_mixed_trees_agree_with_the_scalar_evaluator():
    cfg = DataConfig(family="perm", group_k=4, ops=("PRD", "SGN", "PNT", "SPRD"))
    ex = sample_examples(cfg, 500, np.random.default_rng(1))
    g, perm = groups.symmetric_group(4), ssum_permutation(24, cfg.seed)
    got = [evaluate(parse(t, group=g), perm=perm, group=g) for t in ex.expressions(Vocab.of(cfg))]
    assert (np.array(got) == ex.answers).all()
    assert len(set(ex.root_ops.tolist())) == 4


def test_vocabulary_and_answer_balance():
    vocab = Vocab.of(DataConfig(family="perm", group_k=5))
    assert len(vocab) == 120 + 2 + len(PERM_OPERATORS) + 3
    assert vocab.tokens[:2] == ["01234", "01243"] and vocab.n_values == 120
    assert len(Vocab(10)) == 10 + 2 + len(LISTOPS_OPERATORS) + 3  # ListOps' is unchanged
    ex = sample_examples(
        DataConfig(family="perm", ops=("PRD",), tree="single"), 6000, np.random.default_rng(0)
    )
    counts = np.bincount(ex.answers, minlength=6)
    assert counts.min() > 800  # products of uniform elements are uniform


def test_pools_and_test_sets_for_every_companion():
    cfg = DataConfig(
        family="perm", ops=PERM_OPERATORS, tree="single", train_size=500, test_size=200
    )
    sets = make_test_sets(cfg)
    for op in PERM_OPERATORS:
        pool = make_pool(cfg, op, sets[op])
        assert len(pool) == 500 and (pool.root_ops == pool.root_ops[0]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"family": "perm", "group_k": 6}, "group_k must be in 3..5"),
        ({"family": "perm", "group_k": 2}, "group_k must be in 3..5"),
        ({"family": "perm", "ops": ("SUM",)}, "not in the perm family"),
        ({"ops": ("PRD",)}, "not in the listops family"),
        ({"family": "perm", "modulus": 7}, "modulus belongs to the listops family"),
        ({"group_k": 4}, "group_k belongs to the perm family"),
        ({"family": "perm", "ops": ("PRD", "CYC")}, "need single-operator trees"),
        ({"family": "nope"}, "family must be one of"),
        (
            {"family": "perm", "ops": ("CYC",), "tree": "single", "max_depth": 1, "max_args": 2}
            | {"min_args": 2, "train_size": 10},  # 3 x 3 flat expressions exist
            "more than the 9 distinct CYC expressions",
        ),
    ],
)
def test_bad_family_configs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**kwargs)


def test_saved_config_round_trips():
    cfg = RunConfig(data=DataConfig(family="perm", group_k=4, ops=("PRD", "BLK"), tree="single"))
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = cfg.to_dict()
    for key in ("family", "group_k"):  # a run saved before the family existed is ListOps
        del old["data"][key]
    old["data"]["ops"] = ["SUM"]
    assert RunConfig.from_dict(old).data.family == "listops"


# ----------------------------------------------------------------------------- the proxy
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_solver_solves_its_task(family):
    for op in FAMILIES[family]:
        cfg = DataConfig(family=family, ops=(op,), tree="single", seed=3)
        ex = sample_examples(cfg, 200, np.random.default_rng(2))
        vocab, scope = Vocab.of(cfg), {}
        exec(STUB + solver(cfg), scope)  # our own solver source, written in complexity.py
        for text, answer in zip(ex.expressions(vocab), ex.answers):
            got = scope["S"](text)
            got = "".join(map(str, got)) if isinstance(got, tuple) else str(got)
            assert got == vocab.tokens[answer], (op, text)


def test_proxy_is_deterministic_and_shares_helpers():
    perm = DataConfig(family="perm", ops=("PRD", "SGN"))
    assert proxy(perm) == proxy(perm) == proxy(DataConfig(family="perm", ops=("PRD", "SGN")))
    # a mixture writes a shared helper once: less than the two solvers apart
    both, alone = proxy(perm), proxy(perm, ("PRD",)) + proxy(perm, ("SGN",))
    assert both < alone
    listops = DataConfig(ops=("SUM", "MAX", "MED"))
    assert proxy(listops, ("MAX",)) < proxy(listops, ("SUM", "MAX", "MED"))
    assert proxy(listops, ("SSUM",)) > proxy(listops, ("SUM",))  # a table costs bytes


def test_power_law_fit_recovers_an_exponent():
    x = np.array([20.0, 40, 80, 160])
    law = fit_power_law(x, 18 * x**0.5)
    assert law.b == pytest.approx(0.5) and law.a == pytest.approx(18) and law.n == 4
    noisy = fit_power_law([20, 40, 80], [100, 300, 250])
    assert noisy.b_ci[0] < noisy.b < noisy.b_ci[1]  # one degree of freedom: a wide interval
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        fit_power_law([20], [100])


# ----------------------------------------------------------------------------- the CLI
def test_cli_complexity_and_data_files(tmp_path, capsys):
    assert main(["complexity", "--family", "perm", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["task"] for r in rows] == list(PERM_OPERATORS) + ["PRD+SGN+PNT"]
    assert main(["complexity", "--mixture", "PRD,SGN", "--mixture", "SUM"]) == 0
    assert "PRD+SGN" in capsys.readouterr().out
    out = tmp_path / "s4.tsv"
    args = ["data", "sample", "--family", "perm", "--group-k", "4", "--n", "50"]
    assert main([*args, "--out", str(out)]) == 0
    line = out.read_text().splitlines()[0]
    expr, answer = line.split("\t")
    assert expr.startswith("[PRD") or expr.startswith("[SGN") or expr.startswith("[PNT")
    assert len(answer) == 4
    capsys.readouterr()
    assert main(["data", "evaluate", str(out), "--group-k", "4"]) == 0
    assert "50 agree" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["complexity", "--family", "perm", "--group-k", "9"], "group_k must be in 3..5"),
        (["complexity", "--mixture", "PRD,XOR"], "unknown operator"),
        (["train", "--family", "perm", "--ops", "SUM", "--steps", "1"], "not in the perm family"),
        (["train", "--family", "perm", "--group-k", "0", "--steps", "1"], "group_k"),
    ],
)
def test_cli_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_unknown_element_in_a_file(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("[PRD 012 0312 ]\t012\n")
    assert main(["data", "evaluate", str(bad), "--group-k", "3"]) != 0
    err = capsys.readouterr().err.strip()
    assert "not an element of S_3" in err and len(err.splitlines()) == 1


def test_a_permutation_run_trains_and_opens_in_the_analyses(tmp_path, capsys):
    from mechlistops.analysis.common import prepare, random_init
    from mechlistops.analysis.geometry import geometry
    from mechlistops.checkpoint import load_run
    from mechlistops.train import train

    data = {"family": "perm", "ops": ("PRD", "SGN"), "tree": "single", "train_size": 400}
    run_dir = tmp_path / "s3"
    train(tiny_config(data=data, train={"steps": 60, "eval_interval": 30}), run_dir, progress=False)
    run = load_run(run_dir)
    assert run.vocab.group.k == 3 and run.model.cfg.d_vocab == len(run.vocab)
    assert json.loads((run_dir / "vocab.json").read_text())["tokens"][0] == "012"
    inputs = prepare(str(run_dir), limit=100)
    geo = geometry(run.model, random_init(run), inputs.sets, run.vocab)
    assert set(geo.metrics.metric) == {"sign", "last point", "cyclic coset"}
    assert geo.spectra == {}  # elements have no index order to take a Fourier transform over
    assert geo.names == S3.names and list(geo.parity) == S3.sign.tolist()
    capsys.readouterr()
    assert main(["probe", str(run_dir), "--limit", "100", "--folds", "2"]) == 0
    assert "last point" in capsys.readouterr().out
    assert main(["probe", str(run_dir), "--targets", "mod3"]) == 2  # not a target of S_k


def test_config_knows_each_subgroup_operator_and_its_size():
    """config (stdlib only) repeats which operators draw operands from a subgroup, and how
    large it is; this holds those copies to groups.PERM_OPS."""
    from mechlistops.config import SUBGROUP_OPERATORS

    with_domain = tuple(op for op, spec in groups.PERM_OPS.items() if spec.domain is not None)
    assert with_domain == SUBGROUP_OPERATORS
    for k in (3, 4, 5):
        cfg = DataConfig(family="perm", group_k=k, ops=PERM_OPERATORS, tree="single")
        for op in PERM_OPERATORS:
            assert cfg.leaf_values(op) == len(groups.domain(groups.symmetric_group(k), op))
