"""Pictures of register layouts: a tile's grid with every element labelled by the worker that
holds it and its local index there (``w3:1``; replicated elements list every worker), one
colour per worker. ``bittile layout "spatial(4, 8).local(2, 1)" --png out.png`` draws one.

matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

import numpy as np

from bittile.ir.layout import RegisterLayout

__all__ = ["layout_labels", "draw_layout"]


def layout_labels(layout: RegisterLayout) -> np.ndarray:
    """The label of every element of a 1-D or 2-D layout (an array of str of its shape)."""
    if layout.rank not in (1, 2):
        raise ValueError(f"pictures show 1-D and 2-D layouts, not rank {layout.rank}")
    _, local = layout.tables()
    labels = np.empty(layout.shape, dtype=object)
    for index in np.ndindex(*layout.shape):
        workers = layout.workers_of(index)
        who = ",".join(str(w) for w in workers)
        labels[index] = f"w{who}:{int(local[index])}"
    return labels


def draw_layout(layout: RegisterLayout, path=None, *, title: str | None = None):
    """Draw ``layout``; write a PNG to ``path`` if given; return the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = layout_labels(layout)
    grid = labels.reshape(1, -1) if labels.ndim == 1 else labels
    worker, _ = layout.tables()
    worker = worker.reshape(grid.shape)
    rows, cols = grid.shape
    fig, ax = plt.subplots(figsize=(max(2.0, 0.75 * cols), max(1.2, 0.5 * rows)))
    cmap = plt.get_cmap("tab20", max(layout.num_workers, 1))
    ax.imshow(worker, cmap=cmap, vmin=-0.5, vmax=max(layout.num_workers, 1) - 0.5,
              aspect="auto")
    size = 7 if cols <= 16 else 5
    for (r, c), text in np.ndenumerate(grid):
        ax.text(c, r, text, ha="center", va="center", fontsize=size)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_title(title if title is not None else str(layout), fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
