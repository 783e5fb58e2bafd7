"""Loss and per-operator accuracy; shared by training, `eval` and analyses.

The training losses (`loss_inputs`, `loss_from_logits`, `loss_fn`) live here beside the
evaluation, so both trainers and every analysis score the same positions the same way.

Accuracy is exact match of the greedy answer token. Without chain-of-thought the answer is read
at the last `=` in one forward pass. With chain-of-thought the model generates its own chain
from the prompt (greedy, no teacher forcing) and is scored on the token before `<eos>`; the
loss is still the teacher-forced loss of the answer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mechlistops.config import DataConfig, RunConfig
from mechlistops.data import Examples, heldout_mask
from mechlistops.forward import fast_logits
from mechlistops.listops import Vocab
from mechlistops.model import to_device
from mechlistops.tl import HookedTransformer


@dataclass
class SetResult:
    """Scores of one model on one test set."""

    n: int
    accuracy: float
    loss: float
    baseline: float  # majority-class accuracy: the most frequent answer, always
    n_heldout: int  # examples guaranteed absent from training (see DataConfig)
    accuracy_heldout: float | None
    # With finite training pools: accuracy on the first test_size rows of the operator's pool
    # (expressions it trained on); the memorisation gap is accuracy_pool - accuracy_heldout.
    n_pool: int = 0
    accuracy_pool: float | None = None

    @property
    def memorisation_gap(self) -> float | None:
        """Pool accuracy minus held-out accuracy (None without both)."""
        if self.accuracy_pool is None or self.accuracy_heldout is None:
            return None
        return self.accuracy_pool - self.accuracy_heldout

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.accuracy_pool is not None:
            out["memorisation_gap"] = self.memorisation_gap
        return out


# ----------------------------------------------------------------------------- losses
# The fields of a batch the loss reads (the ensemble gathers them from pools on its device).
LOSS_FIELDS = ("tokens", "lengths", "prompt_len", "answers")


def loss_inputs(batch: Examples, cfg: RunConfig, device, width: int | None = None):
    """What the loss needs from a batch: tokens (trimmed to `width`, default the longest row),
    the scored positions (None: every position), targets and mask (None: score all)."""
    T = width or int(batch.lengths.max())
    fields = {n: to_device(getattr(batch, n), device) for n in LOSS_FIELDS[1:]}
    fields["tokens"] = to_device(batch.tokens[:, :T].astype(np.int64), device)
    return loss_tensors(fields, cfg, T)


def loss_tensors(fields: dict[str, Tensor], cfg: RunConfig, width: int):
    """`loss_inputs` from LOSS_FIELDS tensors with any leading dims (a batch, or an ensemble's
    members by batch); tokens are trimmed to `width`."""
    tokens = fields["tokens"][..., :width]
    lengths = fields["lengths"][..., None]
    if cfg.train.loss_on == "answer" and not cfg.data.chain_of_thought:
        return tokens, lengths - 3, fields["answers"][..., None], None  # at the last `=`
    pad = torch.full_like(tokens[..., :1], Vocab.of(cfg.data).pad)
    targets = torch.cat([tokens[..., 1:], pad], dim=-1)  # position p predicts token p + 1
    pos = torch.arange(width, device=tokens.device)
    if cfg.train.loss_on == "sequence":
        mask = pos < lengths - 1
    else:  # chain-of-thought: every generated token after the first `=`, up to the answer
        first = fields["prompt_len"][..., None] - 1
        mask = (pos >= first) & (pos <= lengths - 3)
    return tokens, None, targets, mask


def loss_from_logits(
    logits: Float[Tensor, "*models batch q d_vocab"],
    targets: Int[Tensor, "*models batch q"],
    mask: Bool[Tensor, "*models batch q"] | None,
) -> Float[Tensor, "*models"]:
    """Mean cross-entropy over the scored positions (per model when there is a model dim)."""
    losses = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(
        targets.shape
    )
    if mask is None:
        return losses.mean((-2, -1))
    return (losses * mask).sum((-2, -1)) / mask.sum((-2, -1))


def hits_from_logits(
    logits: Float[Tensor, "*models batch q d_vocab"],
    targets: Int[Tensor, "*models batch q"],
    mask: Bool[Tensor, "*models batch q"] | None,
) -> Float[Tensor, "*models"]:
    """The fraction of scored positions whose most likely token is the target (per model):
    the training batch's accuracy, on what the loss scores."""
    hits = (logits.detach().argmax(-1) == targets).float()
    if mask is None:
        return hits.mean((-2, -1))
    return (hits * mask).sum((-2, -1)) / mask.sum((-2, -1))


def loss_fn(
    model: HookedTransformer, batch: Examples, cfg: RunConfig, device
) -> tuple[Tensor, Tensor]:
    """Cross-entropy on the answer (default) or on every next token of the sequence, and the
    batch's accuracy on the same positions (no gradient)."""
    tokens, pos, targets, mask = loss_inputs(batch, cfg, device)
    logits = fast_logits(model, tokens, pos)
    return loss_from_logits(logits, targets, mask), hits_from_logits(logits, targets, mask)


# ----------------------------------------------------------------------------- accuracy
def majority_baseline(answers: np.ndarray) -> float:
    return float(np.bincount(answers).max() / len(answers))


def batches(
    ex: Examples, batch_size: int = 1000, device="cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(tokens, answer positions, answers, lengths) per batch, right-padded to the batch's
    longest row. Padding sits after every position anything here reads: with causal attention
    it changes nothing before it."""
    for start in range(0, len(ex), batch_size):
        part = ex.subset(slice(start, start + batch_size))
        length = int(part.lengths.max())
        yield tuple(
            torch.as_tensor(a, device=device)
            for a in (
                part.tokens[:, :length].astype(np.int64),
                part.answer_pos,
                part.answers,
                part.lengths,
            )
        )


def to_tensors(ex: Examples, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole set as one batch: tokens trimmed to the longest row, answer positions,
    answers."""
    tokens, pos, answers, _ = next(batches(ex, len(ex), device))
    return tokens, pos, answers


@torch.no_grad()
def predict(
    model: HookedTransformer, ex: Examples, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy answers read at the last `=` (teacher-forced chain), and per-example loss."""
    device = model.W_E.device
    preds, losses = [], []
    for tokens, pos, answers, _ in batches(ex, batch_size, device):
        logits = fast_logits(model, tokens, pos[:, None])[:, 0].float()
        losses.append(F.cross_entropy(logits, answers, reduction="none").cpu().numpy())
        preds.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(preds), np.concatenate(losses)


@torch.no_grad()
def generate_answers(
    model: HookedTransformer, ex: Examples, vocab: Vocab, batch_size: int = 500
) -> np.ndarray:
    """Greedy generation from the prompt (up to the first `=`); the answer is the token before
    `<eos>`, or -1 when the model never ends its chain."""
    device = model.W_E.device
    out = []
    for start in range(0, len(ex), batch_size):
        part = ex.subset(slice(start, start + batch_size))
        n, width = len(part), part.tokens.shape[1]
        buf = torch.full((n, width), vocab.pad, dtype=torch.long, device=device)
        cur = torch.as_tensor(part.prompt_len, device=device).clone()
        for i, row in enumerate(part.tokens):
            buf[i, : part.prompt_len[i]] = torch.as_tensor(
                row[: part.prompt_len[i]].astype(np.int64)
            )
        answer = torch.full((n,), -1, dtype=torch.long, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        rows = torch.arange(n, device=device)
        while not done.all() and int(cur.max()) < width:
            T = int(cur.max())
            logits = fast_logits(model, buf[:, :T], (cur - 1)[:, None])[:, 0]
            nxt = logits.argmax(-1)
            ended = (nxt == vocab.eos) & ~done
            answer[ended] = buf[rows[ended], cur[ended] - 1]
            done |= ended
            live = ~done & (cur < width)
            buf[rows[live], cur[live]] = nxt[live]
            cur = torch.where(live, cur + 1, cur)
            done |= cur >= width
        answer = torch.where(answer < vocab.n_values, answer, torch.full_like(answer, -1))
        out.append(answer.cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def answers_with_confidence(
    model: HookedTransformer, ex: Examples, cfg: DataConfig, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Each example's greedy answer and the probability the model gives that answer at the
    last `=`; with a chain of thought, the answer its own chain ends on (-1 when it never ends;
    `ex` padded to the model's context) and NaN, a chain having no one probability."""
    was_training = model.training
    model.eval()
    try:
        if cfg.chain_of_thought:
            answers = generate_answers(model, ex, Vocab.of(cfg), batch_size)
            return answers, np.full(len(ex), np.nan)
        device, answers, probs = model.W_E.device, [], []
        for tokens, pos, _, _ in batches(ex, batch_size, device):
            p = fast_logits(model, tokens, pos[:, None])[:, 0].float().softmax(-1)
            best = p.max(-1)
            answers.append(best.indices.cpu().numpy())
            probs.append(best.values.cpu().numpy())
        return np.concatenate(answers), np.concatenate(probs)
    finally:
        model.train(was_training)


def _correct(model: HookedTransformer, ex: Examples, cfg: DataConfig, batch_size: int):
    """Whether each answer is right, and each example's loss."""
    was_training = model.training
    model.eval()
    preds, losses = predict(model, ex, batch_size)
    if cfg.chain_of_thought:
        preds = generate_answers(model, ex, Vocab.of(cfg))
    model.train(was_training)
    return preds == ex.answers, losses


def evaluate_set(
    model: HookedTransformer,
    ex: Examples,
    cfg: DataConfig,
    limit: int | None = None,
    pool: Examples | None = None,
    batch_size: int = 1000,
) -> SetResult:
    """Scores on a test set (its first `limit` rows), and on the first rows of the training
    pool of the same operator when one is given; `batch_size` examples per forward pass."""
    limit = len(ex) if limit is None else limit
    if limit < len(ex):
        ex = ex.subset(slice(0, limit))
    correct, losses = _correct(model, ex, cfg, batch_size)
    held = heldout_mask(cfg, ex)
    result = SetResult(
        n=len(ex),
        accuracy=float(correct.mean()),
        loss=float(losses.mean()),
        baseline=majority_baseline(ex.answers),
        n_heldout=int(held.sum()),
        accuracy_heldout=float(correct[held].mean()) if held.any() else None,
    )
    if pool is not None:
        rows = pool.subset(slice(0, min(limit, cfg.test_size)))
        result.n_pool = len(rows)
        result.accuracy_pool = float(_correct(model, rows, cfg, batch_size)[0].mean())
    return result


def evaluate_sets(
    model: HookedTransformer,
    test_sets: dict[str, Examples],
    cfg: DataConfig,
    limit: int | None = None,
    pools: dict[str, Examples] | None = None,
    batch_size: int = 1000,
) -> dict[str, SetResult]:
    pools = pools or {}
    return {
        name: evaluate_set(model, ex, cfg, limit, pools.get(name), batch_size)
        for name, ex in test_sets.items()
    }


def format_table(results: dict[str, SetResult]) -> str:
    """Plain-text table: one row per test set, accuracy beside the majority baseline."""
    lines = [
        f"{'test set':<10} {'n':>6} {'accuracy':>9} {'baseline':>9} {'loss':>8} "
        f"{'held-out acc (n)':>18}"
    ]
    pools = any(r.accuracy_pool is not None for r in results.values())
    if pools:
        lines[0] += f" {'pool acc (n)':>16} {'gap':>7}"
    for name, r in results.items():
        held = "-" if r.accuracy_heldout is None else f"{r.accuracy_heldout:.3f} ({r.n_heldout})"
        line = f"{name:<10} {r.n:>6} {r.accuracy:>9.3f} {r.baseline:>9.3f} {r.loss:>8.4f}"
        line += f" {held:>18}"
        if pools:
            pool = "-" if r.accuracy_pool is None else f"{r.accuracy_pool:.3f} ({r.n_pool})"
            gap = r.memorisation_gap
            line += f" {pool:>16} {'-' if gap is None else f'{gap:+.3f}':>7}"
        lines.append(line)
    return "\n".join(lines)
