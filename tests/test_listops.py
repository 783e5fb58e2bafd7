"""The scalar side: vocabulary, parsing, operator semantics on hand-worked examples."""

import numpy as np
import pytest

from mechlistops.errors import ParseError
from mechlistops.listops import Vocab, apply_op, evaluate, parse, ssum_permutation, to_text


@pytest.mark.parametrize(
    "text, answer",
    [
        ("[SUM 3 [MAX 4 9 ] 2 ]", 4),  # 3 + 9 + 2 = 14
        ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
        ("[MED 1 8 3 ]", 3),
        ("[MED 1 8 3 4 ]", 3),  # listops rule: int((3 + 4) / 2)
        ("[MED 2 9 ]", 5),
        ("[PROD 3 4 5 ]", 0),  # 60 mod 10
        ("[PROD 3 3 ]", 9),
        ("[NADD 1 2 3 ]", 2),  # 1 - 2 + 3
        ("[NADD 1 5 ]", 6),  # -4 mod 10
        ("[MIN [SUM 9 9 ] [PROD 2 3 ] ]", 6),  # min(8, 6)
    ],
)
def test_worked_examples(text, answer):
    assert evaluate(parse(text)) == answer


def test_median_lower_rule():
    assert evaluate(parse("[MED 1 8 3 4 ]"), median="lower") == 3
    assert evaluate(parse("[MED 2 9 ]"), median="lower") == 2
    assert evaluate(parse("[MED 2 9 ]"), median="listops") == 5


def test_ssum_is_sum_under_relabelling():
    perm = ssum_permutation(10, seed=3)
    assert sorted(perm) == list(range(10))
    inv = np.argsort(perm)
    for a, b in [(1, 2), (7, 9), (0, 0)]:
        assert apply_op("SSUM", [a, b], 10, perm=perm) == perm[(inv[a] + inv[b]) % 10]
    assert not np.array_equal(ssum_permutation(10, 0), ssum_permutation(10, 1))


def test_original_listops_spellings():
    # SPINN parentheses and `[SM` for sum mod 10
    assert evaluate(parse("( ( [SM 2 ) 9 ) ] )")) == 1
    assert to_text(parse("( ( ( [MAX 2 ) 9 ) [MIN 4 7 ] ) ] )")) == "[MAX 2 9 [MIN 4 7 ] ]"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[SUM 3 4", "never closed"),
        ("[SUM 3 4 ] ]", "after the expression closed"),
        ("3 ]", "outside any operator"),
        ("[FOO 3 4 ]", "unknown operator"),
        ("[SUM 3 12 ]", "outside the modulus"),
        ("[SUM ]", "no arguments"),
        ("[SUM 3 x ]", "expected a value"),
        ("", "empty"),
    ],
)
def test_parse_errors_name_the_problem(text, message):
    with pytest.raises(ParseError, match=message):
        parse(text)


def test_vocab_round_trip_and_ids():
    vocab = Vocab(10)
    assert [vocab.ids[str(v)] for v in range(10)] == list(range(10))
    text = "<bos> [SUM 3 [MAX 4 9 ] 2 ] = 4 <eos>"
    assert vocab.decode(vocab.encode(text)) == text
    assert len(Vocab(36)) == 36 + 12
    with pytest.raises(ParseError):
        vocab.encode("[SUM 11 ]")
