"""Templates of the im2col backend's column kernels for short window rows.

For the windows of ``PX_SHAPES`` the column build (im2col) and its adjoint (col2im) get a
kernel of their own with one pixel's moves spelled out; :func:`load` renders them into one
module and imports it from fastnn's cache directory (:func:`fastnn._jit.load_generated`):
nothing generated is kept in the source tree. The kernels call the scratch-row helpers of
:mod:`fastnn.backends.im2col.columns` (``_span``, ``_fill_rows``, ``_add_rows``); that file is
part of the module's hash, so editing a helper compiles these kernels again. To read the
kernels, open ``<cache>/kernels/im2col_px_<hash>.py`` (``fastnn cache`` prints the directory).
"""

from __future__ import annotations

from typing import List


def _ind(lines: List[str], n: int) -> List[str]:
    return [" " * n + s if s else s for s in lines]


#: (fh, fw*C) windows whose im2col column build and col2im get kernels of their own with
#: each pixel's moves spelled out (written for square 3x3, 5x5 and 7x7 windows on 1 and 3
#: channels, the first layers of image networks; chosen by (fh, fw*C), so a 3x1 window on
#: 3 channels takes the (3, 3) one too). The generic block-copy kernel (``columns._im2col_spill_nb``) moves a
#: window row as whole 16-value blocks that overlap the next; spelled out, LLVM loads the
#: fh*fw*C values and stores them as one contiguous run (faster on cat_c1's 3x3 windows on RGB in
#: both dtypes; docs/bench/backend-notes.md).
PX_SHAPES = ((3, 3), (3, 9), (5, 5), (5, 15), (7, 7), (7, 21))


def im2col_px(fh: int, run: int) -> List[str]:
    """The column build of ``columns._im2col_spill_nb`` for fh x (run // C) windows on C
    channels (any C dividing run), with one pixel's fh * run moves spelled out: all loads
    first, then the stores, so LLVM packs them into vectors (no aliasing question)."""
    kd = fh * run
    moves = [f"s{i} = S[{i} * SW + so:{i} * SW + so + {run}]" for i in range(fh)]
    moves += [f"t{i * run + k} = s{i}[{k}]" for i in range(fh) for k in range(run)]
    moves += [f"d = o1[do:do + {kd}]"] + [f"d[{j}] = t{j}" for j in range(kd)]
    return [
        "@kernel",
        f"def im2col_{fh}x{run}(X3, C, n0, h0, w0, nb, ho, wo, sh, sw, ph, pw, value, out, extra):",
        f'    """columns._im2col_spill_nb for fh = {fh}, fw * C = {run} (``out``: {kd} columns, or one',
        '    more set to ``extra``)."""',
        f"    fw = {run} // C",
        "    W = X3.shape[2] // C",
        "    L = out.shape[1]",
        "    o1 = out.reshape(out.size)",
        "    ncol = (wo - 1) * sw + fw",
        "    left = w0 * sw - pw",
        "    SW = ncol * C",
        f"    S = np.empty({fh} * SW, dtype=out.dtype)",
        "    jlo, jhi = _span(left, ncol, W)",
        f"    one = L == {kd} + 1",
        "    r = 0",
        "    for n in range(nb):",
        "        for h in range(ho):",
        f"            _fill_rows(X3, n0 + n, (h0 + h) * sh - ph, {fh}, C, left, jlo, jhi, value, S, SW)",
        "            for w in range(wo):",
        "                so = w * sw * C",
        "                do = (r + w) * L",
        *_ind(moves, 16),
        "                if one:",
        f"                    o1[do + {kd}] = extra",
        "            r += wo",
    ]


def col2im_px(fh: int, run: int) -> List[str]:
    """``columns._col2im_spill_nb`` for fh x (run // C) windows on C channels, each pixel's
    fh * run adds spelled out: the pixel's column values loaded first, then each window row
    added into the scratch. Pixels whose window rows overlap are taken apart (P pixels
    apart, in P passes), so an add never waits on the store of the one before it."""
    kd = fh * run
    adds = ["g = c1[do:do + %d]" % kd] + [f"t{j} = g[{j}]" for j in range(kd)]
    for i in range(fh):
        adds.append(f"s = S[{i} * SW + so:{i} * SW + so + {run}]")
        adds += [f"s[{k}] += t{i * run + k}" for k in range(run)]
    return [
        "@kernel",
        f"def col2im_{fh}x{run}(cols, dX3, C, n0, h0, w0, nb, ho, wo, sh, sw, ph, pw):",
        f'    """columns._col2im_spill_nb for fh = {fh}, fw * C = {run} (``cols``: C-contiguous, {kd} columns)."""',
        f"    fw = {run} // C",
        "    W = dX3.shape[2] // C",
        "    c1 = cols.reshape(cols.size)",
        "    ncol = (wo - 1) * sw + fw",
        "    left = w0 * sw - pw",
        "    SW = ncol * C",
        f"    S = np.empty({fh} * SW, dtype=dX3.dtype)",
        "    jlo, jhi = _span(left, ncol, W)",
        f"    P = min(wo, ({run} + sw * C - 1) // (sw * C))  # pixels whose window rows may overlap",
        "    r = 0",
        "    for n in range(nb):",
        "        for h in range(ho):",
        "            top = (h0 + h) * sh - ph",
        "            S[:] = 0",
        "            for q in range(P):",
        "                for w in range(q, wo, P):",
        "                    so = w * sw * C",
        f"                    do = (r + w) * {kd}",
        *_ind(adds, 20),
        f"            _add_rows(S, SW, dX3, n0 + n, top, {fh}, C, left, jlo, jhi)",
        "            r += wo",
    ]


def source() -> str:
    out = ["import numpy as np", "", "from fastnn._jit import kernel",
           "from fastnn.backends.im2col.columns import _add_rows, _fill_rows, _span", ""]
    for fh, run in PX_SHAPES:
        out += ["", "", *im2col_px(fh, run), "", "", *col2im_px(fh, run)]
    for name in ("im2col", "col2im"):
        out += ["", f"#: (fh, fw*C) -> {name} kernel with the window's moves spelled out",
                f"{name.upper()}_PX = {{", *[f"    ({fh}, {run}): {name}_{fh}x{run}," for fh, run in PX_SHAPES], "}"]
    return "\n".join(out) + "\n"


def load():
    """The generated module, imported from the cache (after :mod:`.columns`, whose helpers it calls)."""
    from ..._jit import load_generated
    from . import columns

    return load_generated("im2col_px", source(), depends=[columns.__file__])

