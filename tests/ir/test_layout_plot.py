"""Layout pictures label every element with the workers holding it and its local index, as
the layout maps them."""

import numpy as np
import pytest

from bittile.ir.layout import column_spatial, local, parse_layout, replicated, spatial
from bittile.ir.layout_plot import draw_layout, layout_labels

LAYOUTS = [
    local(2, 1) * spatial(8, 4) * local(1, 2),
    spatial(4, 8).local(2, 1),
    column_spatial(2, 4) * local(3, 1),
    replicated(2, 2) * spatial(2, 2),
    spatial(8),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_labels_match_the_mapping(layout):
    labels = layout_labels(layout)
    assert labels.shape == layout.shape
    seen = np.zeros(layout.shape, dtype=int)
    for worker in range(layout.num_workers):
        for slot in range(layout.local_size):
            index = layout.logical_index(worker, slot)
            who, _, loc = labels[index].partition(":")
            assert int(loc) == slot
            assert worker in [int(w) for w in who[1:].split(",")]
            seen[index] += 1
    # every element is drawn once and held by exactly the workers its label lists
    for index in np.ndindex(*layout.shape):
        assert len(labels[index][1:].split(":")[0].split(",")) == seen[index]


def test_a_png_is_written(tmp_path):
    path = tmp_path / "layout.png"
    draw_layout(parse_layout("local(2, 1).spatial(8, 4).local(1, 2)"), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cli_draws_a_layout(tmp_path, capsys):
    from bittile.runtime.cli import main

    path = tmp_path / "l.png"
    assert main(["layout", "spatial(4, 8).local(2, 1)", "--png", str(path)]) == 0
    assert path.exists() and "32 workers" in capsys.readouterr().out
    assert main(["layout", "spatial(4, 8, 2)", "--png", str(path)]) == 1  # 3-D: refused
