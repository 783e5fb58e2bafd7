"""Interactive circuitsvis attention views that never touch the network.

circuitsvis renders a view two ways: `local_src` (its JavaScript bundle inlined, works offline)
and `cdn_src` (loads the bundle from a CDN). Its notebook display picks the CDN whenever it
believes it is online, and `str(view)` is always the CDN version, so a notebook saved on one
machine can show nothing on another. `OfflineView` always renders `local_src`.

For pages with several views (the side-by-side report), `split_view` separates the bundle from
each view's render call, so a page carries the bundle once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from circuitsvis.attention import attention_heads

from mechlistops.data import Examples
from mechlistops.listops import Vocab
from mechlistops.tl import HookedTransformer


@dataclass
class OfflineView:
    """A circuitsvis view that renders its inlined JavaScript in every notebook, online or not."""

    local_src: str

    def _repr_html_(self) -> str:
        return self.local_src

    def __html__(self) -> str:
        return self.local_src

    def __str__(self) -> str:
        return self.local_src


def offline(view) -> OfflineView:
    """Wrap any circuitsvis RenderedHTML so that it displays offline."""
    return OfflineView(view.local_src)


def token_labels(tokens, vocab: Vocab) -> list[str]:
    """Readable labels (`[SUM`, `3`, `]`, ...); circuitsvis numbers the positions itself."""
    return [vocab.tokens[int(t)] for t in tokens]


@torch.no_grad()
def attention_view(
    model: HookedTransformer,
    ex: Examples,
    index: int,
    vocab: Vocab,
    layer: int = 0,
) -> OfflineView:
    """`attention_heads` for one example at one layer, up to and including the answer."""
    n = int(ex.answer_pos[index]) + 2  # through the answer token
    tokens = torch.as_tensor(ex.tokens[index, :n].astype(np.int64), device=model.W_E.device)
    name = f"blocks.{layer}.attn.hook_pattern"
    _, cache = model.run_with_cache(tokens[None], names_filter=lambda x: x == name)
    pattern = cache[name][0].cpu()  # (head, query, key)
    names = [f"L{layer}H{h}" for h in range(pattern.shape[0])]
    view = attention_heads(
        pattern, token_labels(tokens.tolist(), vocab), attention_head_names=names
    )
    return offline(view)


_SPLIT = re.compile(
    r'^(?P<div><div id="(?P<id>[^"]+)"[^>]*/?>)\s*<script[^>]*>\s*(?P<bundle>.*?)'
    r"\s*(?P<call>CircuitsVis\.render\(.*\))\s*</script>\s*$",
    re.S,
)


def split_view(view: OfflineView) -> tuple[str, str, str]:
    """(element id, JavaScript bundle, render call) of a view's local source."""
    m = _SPLIT.match(view.local_src.strip())
    if m is None:
        raise ValueError("unrecognised circuitsvis output (its format may have changed)")
    return m["id"], m["bundle"], m["call"]


def views_page_fragment(views: list[OfflineView]) -> tuple[str, list[str]]:
    """The bundle once, and for each view the HTML that renders it with that bundle."""
    bundle, parts = "", []
    for v in views:
        element_id, b, call = split_view(v)
        bundle = bundle or b
        parts.append(
            f'<div id="{element_id}" style="margin: 15px 0;"></div>\n<script>{call}</script>'
        )
    return bundle, parts
