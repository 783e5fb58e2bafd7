"""Attention views render from the inlined bundle, and split into bundle + render call."""

import numpy as np
import pytest

from mechlistops.analysis.views import attention_view, split_view, views_page_fragment
from mechlistops.config import DataConfig, ModelConfig
from mechlistops.data import sample_examples
from mechlistops.listops import Vocab
from mechlistops.model import build_model


@pytest.fixture(scope="module")
def views():
    data = DataConfig()
    model = build_model(ModelConfig(n_layers=2, d_model=16, n_heads=2), data)
    ex = sample_examples(data, 3, np.random.default_rng(0))
    return [attention_view(model, ex, i, Vocab(10), layer=1) for i in range(3)]


def test_views_are_offline_everywhere(views):
    v = views[0]
    assert v._repr_html_() == str(v) == v.local_src
    assert "var CircuitsVis=" in v.local_src and "unpkg" not in v.local_src
    assert '"[SUM"' in v.local_src or '"[MAX"' in v.local_src or '"[MED"' in v.local_src


def test_split_view_and_page_fragment(views):
    element_id, bundle, call = split_view(views[0])
    assert call.startswith("CircuitsVis.render(") and element_id in call
    assert bundle.startswith('"use strict";var CircuitsVis=')
    page_bundle, parts = views_page_fragment(views)
    assert page_bundle == bundle and len(parts) == 3
    assert all("var CircuitsVis=" not in p for p in parts)  # the bundle is not repeated
