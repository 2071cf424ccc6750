"""Draw the layout pictures docs/layouts.md shows (``make docs`` runs this first)."""

import pathlib

from bittile.ir.layout import local, spatial
from bittile.ir.layout_plot import draw_layout

OUT = pathlib.Path(__file__).resolve().parent / "images"

PICTURES = {
    "layout-spatial.png": spatial(4, 8),
    "layout-local.png": local(2, 4),
    "layout-composition.png": local(2, 1).spatial(8, 4).local(1, 2),
    "layout-division.png": spatial(2, 4).local(2, 1) / local(2, 1),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, layout in PICTURES.items():
        draw_layout(layout, OUT / name)


if __name__ == "__main__":
    main()
