"""Cell diagrams of DARTS-space genotypes, in the style of the GAEA paper's Figure 3 (after DARTS's plots)."""
from __future__ import annotations

import os
from pathlib import Path

from .spaces.darts_genotypes import STEPS, Genotype, load_genotype

__all__ = ["draw_genotype", "draw_cell", "node_positions", "OP_COLOURS"]

OP_COLOURS: dict[str, str] = {  # one colour per operation, readable on white
    "max_pool_3x3": "#1f77b4", "avg_pool_3x3": "#17becf", "skip_connect": "#7f7f7f",
    "sep_conv_3x3": "#d62728", "sep_conv_5x5": "#ff7f0e", "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#9467bd", "none": "#bbbbbb",
}
NODE_FILL = {"input": "#c1ffc1", "node": "#add8e6", "output": "#eee8aa"}  # DARTS's graphviz palette
COLUMN, INPUT_Y = 2.6, 2.0  # layout units: gap between node columns; height of the inputs above/below the row


def node_positions(steps: int = STEPS) -> dict[str, tuple[float, float]]:
    """(x, y) of every node: c_{k-2} above and c_{k-1} below on the left, nodes 0..steps-1 in a row, c_{k} last.

    Input edges are straight lines that fan out to the row, so they pass no other node; edges
    along the row that skip a node bow above it, and edges into c_{k} bow below.
    """
    pos = {"c_{k-2}": (0.0, INPUT_Y), "c_{k-1}": (0.0, -INPUT_Y)}
    for j in range(steps):
        pos[str(j)] = (COLUMN * (j + 1), 0.0)
    pos["c_{k}"] = (COLUMN * (steps + 1), 0.0)
    return pos


def _name(index: int) -> str:
    """Node name of cell input index i: 0 -> c_{k-2}, 1 -> c_{k-1}, i >= 2 -> intermediate node i - 2."""
    return ("c_{k-2}", "c_{k-1}")[index] if index < 2 else str(index - 2)


def _bend(src: tuple[float, float], dst: tuple[float, float], upwards: bool, repeat: int = 0) -> float:
    """arc3 curvature: straight between neighbours and from the inputs, else bowed over (or under) the row.

    A repeated (source, destination) pair gets a further bend so the two edges stay apart.
    """
    along_row = src[1] == dst[1]
    skips = along_row and dst[0] - src[0] > COLUMN * 1.01
    rad = (-0.22 if upwards else 0.3) if skips else 0.0  # arc3: negative rad bows left-to-right edges upwards
    return rad - 0.3 * repeat


def _midpoint(src: tuple[float, float], dst: tuple[float, float], rad: float) -> tuple[float, float]:
    """The middle of matplotlib's arc3 quadratic curve (exact with an equal-aspect axis)."""
    (x1, y1), (x2, y2) = src, dst
    return (x1 + x2) / 2 + rad * (y2 - y1) / 2, (y1 + y2) / 2 - rad * (x2 - x1) / 2


def draw_cell(ax, cell: tuple[tuple[str, int], ...], concat: tuple[int, ...], title: str) -> None:
    """Draw one cell on a matplotlib axis: labelled, coloured op edges and grey concat edges to c_{k}."""
    pos = node_positions(len(cell) // 2)
    box = dict(boxstyle="round,pad=0.35", ec="black", lw=1.0)
    kinds = {"c_{k-2}": "input", "c_{k-1}": "input", "c_{k}": "output"}
    for name, (x, y) in pos.items():
        label = f"${name}$" if name.startswith("c_") else name
        ax.text(x, y, label, ha="center", va="center", fontsize=12, zorder=3,
                bbox={**box, "fc": NODE_FILL[kinds.get(name, "node")]})
    seen: dict[tuple[str, str], int] = {}
    for k, (op, index) in enumerate(cell):
        src, dst = _name(index), str(k // 2)
        repeat = seen.get((src, dst), 0)
        seen[(src, dst)] = repeat + 1
        _edge(ax, pos[src], pos[dst], _bend(pos[src], pos[dst], True, repeat), OP_COLOURS.get(op, "black"), op)
    for i in concat:
        src = _name(i)
        _edge(ax, pos[src], pos["c_{k}"], _bend(pos[src], pos["c_{k}"], False), "#999999", None)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=13)


def _edge(ax, src: tuple[float, float], dst: tuple[float, float], rad: float, colour: str,
          label: str | None) -> None:
    ax.annotate("", xy=dst, xytext=src, zorder=1,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.6, shrinkA=16, shrinkB=16,
                                connectionstyle=f"arc3,rad={rad:.3f}"))
    if label is not None:
        x, y = _midpoint(src, dst, rad)
        ax.text(x, y, label, ha="center", va="center", fontsize=8, color=colour, zorder=2,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))


def draw_genotype(genotype: Genotype | str | os.PathLike, out_prefix: str | os.PathLike) -> list[Path]:
    """Write <prefix>-normal.{png,svg} and <prefix>-reduce.{png,svg}; returns the paths written.

    `genotype` may be a Genotype or anything load_genotype accepts (a published name, a file, a run
    directory, or the text). SVG text stays text, so labels can be edited and searched.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(genotype, Genotype):
        genotype = load_genotype(genotype)
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    written = []
    cells = (("normal", genotype.normal, genotype.normal_concat, "normal cell"),
             ("reduce", genotype.reduce, genotype.reduce_concat, "reduction cell"))
    with plt.rc_context({"svg.fonttype": "none"}):
        for kind, cell, concat, title in cells:
            fig, ax = plt.subplots(figsize=(11, 5))
            draw_cell(ax, cell, concat, title)
            fig.tight_layout()
            for ext in ("png", "svg"):
                path = prefix.with_name(f"{prefix.name}-{kind}.{ext}")
                fig.savefig(path, dpi=150)
                written.append(path)
            plt.close(fig)
    return written
