"""The ``numba`` backend: parallel, register-tiled Numba kernels (NHWC, no im2col).

The kernels are in :mod:`.kernels` (hand-written) and generated from :mod:`.templates` (the
register tiles, one per entry of :mod:`.tiles`); this module only registers thin wrappers that
pick the tile (:mod:`.tiles`), prepare padded or packed copies, and run the kernel whole (small
work) or in chunks of its outer loop on fastnn's threads (:mod:`.threads`).

* Convolution forward: a padded copy of the input (only when pad > 0) so that for each
  filter row the (kw, C_in) window is one contiguous run; a tile of P output pixels x T
  output channels is accumulated in registers. W is packed in blocks of T channels; the
  last pixel and channel blocks are shifted back to end at Wo and K (no tail code), and
  every hot index is a loop variable on a view sliced outside the loop, so Numba's
  negative-index wraparound code stays out of the inner loop. (P, T) is chosen per call
  from ``FWD_TILES`` (one compiled kernel per tile shape, compiled on first use).
* Channels-first calls (``"layout": "NCHW"``; the wrapper passes NHWC-shaped views of the NCHW
  arrays where ``conv_forward.channels_first(p)`` says so: the tiled path): the forward tile
  kernel's NCHW build (``templates.conv_fwd_nchw``) transposes each image it reaches into a
  per-chunk padded buffer (in cache for images up to a few hundred KB) and stores each output
  row transposed from a row buffer (the same arithmetic: the same bits as the NHWC call); the
  backward copies the input (padded) and dZ to NHWC for dW with ``kernels.nchw_to_nhwc`` and, at
  stride 1 with pads below the filter, computes dA_prev with the NCHW forward build straight into
  the NCHW array.
* dW / db: the same tile over (kw*C_in) x C_out, one partial per chunk of output rows
  (chunk count = thread count), summed in chunk order: deterministic for a fixed thread
  count. C_out is zero-padded to a multiple of the tile's T and kw*C_in to one of J, so
  the kernel has no tail code (the padded partials are dropped).
* Small convolutions (fewer than ``SERIAL_WORK`` multiply-adds) run plain serial kernels
  (no launch cost, quick to compile); which kernel runs depends on the shape only.
* Threads: a kernel runs in chunks on fastnn's threads only from ``THREADED_WORK`` elements
  (``THREADED_CONV_WORK`` multiply-adds for a convolution): below, the hand-off to the
  workers costs more than it saves (:mod:`.config`). The planner may choose otherwise per
  call (the "serial" and "threaded" variants). A large call's kernel runs in up to
  ``CHUNKS_PER_THREAD`` chunks a thread, which the threads take in turn (not dW, whose chunks
  are its partials).
* dA_prev, per stride phase (the input pixels whose padded index is r mod the stride): a
  stride-1 correlation of dZ, zero-padded (or cropped), with the phase's taps W[r::s]
  flipped in (kh, kw) and transposed to (C_out, C_in). That is the forward kernel itself
  ("full" correlation), at the forward's speed and with no kernel of its own to compile;
  stride 1 is one phase, the whole of dA_prev; stride > 1 writes each phase in place, into its
  grid of dA_prev (the forward kernels take an output placement). For C_in <= 4 (and C_out
  at least one vector's lanes) a gather runs instead (each input pixel sums the windows
  covering it, pixels grouped by stride phase) with the sum over k in SIMD lanes (dZ and W
  zero-padded in k to whole lanes), since a forward tile over 3 output channels cannot fill
  a vector; in float32 at stride 1 (rows of at least one pixel block) a correlation of the
  planar padded dZ vectorised over output pixels instead (``templates.conv_dA_px``: no sum
  of lanes per output value).
* dW kernels come in one build per tile (``BWD_T``: AVX2's 4 vectors of channels by J = 3
  input columns, 2 vectors or fewer by J = 4, or 9, 6 or 4 for a one-vector channel tile,
  ``tiles.dw_tile``); a call compiles only the one it uses (the one that pads K least per
  unit of its speed, ``tiles.DW_EFF``). A cold first ``conv_backward``
  after a ``conv_forward`` compiles only dW when C_in > 4, dW and the few-channel gather
  otherwise (``scripts/measure_numba.py --only compile`` measures the cold compiles).
* Pooling: one kernel per mode (max, average, argmax, and each backward) so a call
  compiles only what it runs; NB running values per window in registers, in channel
  blocks of NB = 32, 16, 8 or 1 (the widest that fits C, ``POOL_NB``; the last block
  shifted back to end at C). Backward with non-overlapping windows writes each window's
  positions directly; with overlapping ones it is a gather (each input element sums the
  windows covering it) from the window maxima (ties "all": computed row by row as the
  gather first needs them, in the same pass over the input, and summed in registers when
  NB = 32), argmax positions (ties "first") or dA * (1 / area) (average; summed in registers
  when C >= 32; an average multiplies by the reciprocal the wrapper rounds once, forward and
  backward: a division per output vector cost as much as a 3x3 window's adds); the 32-wide
  max-pool backward gather is the slowest kernel to compile.

Extra memory: the padded input, padded dZ (one per front padding the stride phases need), the
packed W and the dW partials (one per chunk, as many as threads); on channels-first calls, per
chunk one padded image and one output row (the NCHW forward build), and the backward's NHWC
copies of the input (padded) and dZ; never an im2col-sized buffer. Every buffer the wrappers
make for a kernel starts on a ``config.ALIGN``-byte boundary (``_aligned_empty``): the packed
filters' vector loads never span two cache lines.

Threads and thread safety: see :mod:`.config` (``FASTNN_NUM_THREADS``) and :mod:`.threads`.
"""

from __future__ import annotations

import contextvars
import functools
import math

import numpy as np

from ..._dispatch import register, register_backend
from . import config as cfg
from . import kernels
from . import templates, tiles
from .threads import run_chunks

#: The generated kernels (:mod:`.templates`), found through their tables: ``_CONV.FWD[P, T]``,
#: ``_CONV.FWD_ROWS[P, T]``, ``_CONV.DW[J, T]``, ``_CONV.DA[C, L]``, ``_POOL.POOL[kind, NB]``,
#: ``_DW.DW[kind, NB]``.
_CONV = templates.load("conv")
_POOL = templates.load("pool")
_DW = templates.load("depthwise")

NAME = "numba"
register_backend(
    NAME,
    priority=20,
    description="parallel register-tiled Numba kernels (NHWC, direct convolution, no im2col)",
)

_SERIAL_WORK = cfg.SERIAL_WORK
_THREADED_WORK = cfg.THREADED_WORK
_THREADED_CONV_WORK = cfg.THREADED_CONV_WORK
SERIAL, THREADED = "serial", "threaded"
# How the kernels of the current op call use fastnn's threads: None (the rules: threaded from
# ``THREADED_WORK``, a convolution from ``THREADED_CONV_WORK``), SERIAL (every kernel whole
# in the calling thread) or THREADED (every kernel in chunks); the last two are set for one
# call by the planner's "serial" and "threaded" variants, or by a convolution's rule.
_MODE: contextvars.ContextVar = contextvars.ContextVar("fastnn_numba_threads_mode", default=None)


def _num_threads() -> int:
    return 1 if _MODE.get() == SERIAL else cfg.num_threads()


@functools.lru_cache(maxsize=64)
def _scalar(dtype, value):
    """``value`` as a scalar of ``dtype``, made once (a NumPy scalar costs about a microsecond
    to make, a pooling call several). For 0, 1 and -inf: equal values share an entry (-0.0
    would get 0.0's)."""
    return dtype.type(value)


def _run(kernel, work, *args, chunk_work=None):
    """``kernel(*args, chunk, nchunks)`` over all its chunks: whole in the calling thread
    when ``work`` is below ``THREADED_WORK`` (or in a serial call), else on fastnn's threads
    in chunks taken in turn, as many as ``chunk_work`` (default ``work``) makes
    (:func:`.config.chunk_count`). The chunks split the kernel's outer loop, whose
    iterations write disjoint outputs: the split never changes bits."""
    mode = _MODE.get()
    if mode == SERIAL or (mode is None and work < _THREADED_WORK):
        kernel(*args, 0, 1)
    else:
        _in_chunks(kernel, args, work if chunk_work is None else chunk_work, _THREADED_WORK)


def _threaded(kernel, *args, work=0):
    """The kernel's chunks on fastnn's threads (one in all in a serial call): one per thread,
    or for ``work`` multiply-adds up to ``CHUNKS_PER_THREAD`` a thread, taken in turn
    (the chunks write disjoint outputs: the same bits)."""
    _in_chunks(kernel, args, work, _THREADED_CONV_WORK)


def _in_chunks(kernel, args, work, threshold):
    """The kernel on this call's threads, in the chunks :func:`.config.chunk_count` gives
    ``work`` against ``threshold`` (the threading threshold of its kind of work)."""
    nt = _num_threads()
    run_chunks(kernel, args, cfg.chunk_count(work, nt, threshold), nt)


def _conv_work(p):
    """A convolution's multiply-adds (the work the thread rules compare)."""
    return p.m * p.Ho * p.Wo * p.K * p.fh * p.fw * p.C


def _pool_work(p):
    """A pooling's output elements x window."""
    return p.m * p.Ho * p.Wo * p.C * p.fh * p.fw


def _in_mode(mode, fn, *args):
    """``fn(*args)`` with the current call's thread mode set to ``mode``."""
    token = _MODE.set(mode)
    try:
        fn(*args)
    finally:
        _MODE.reset(token)


def _conv_serial_by_rule(p) -> bool:
    """A tiled convolution below ``THREADED_CONV_WORK`` runs on one thread (the rule)."""
    return _MODE.get() is None and _conv_work(p) < _THREADED_CONV_WORK


# ------------------------------------------------------------------------ padding


def _pad_copy(X, out, ph, pw, value):
    """out = X padded by (ph, pw) in front with ``value`` (and behind as far as out reaches)."""
    m, H, W, C = X.shape
    _run(kernels.pad_copy, out.size, X.reshape(m, H, W * C), out.reshape(out.shape[0], out.shape[1], -1),
         ph, pw * C, value)


def _copy_part(dst, src, chunk, nchunks):
    m = dst.shape[0]
    a, b = chunk * m // nchunks, (chunk + 1) * m // nchunks
    if b > a:
        np.copyto(dst[a:b], src[a:b])


def _copy(src, dst):
    """dst[...] = src for arrays of any strides (a transposing copy: NumPy's copy loop
    releases the GIL, so the images are split between fastnn's threads)."""
    _run(_copy_part, 4 * dst.size, dst, src)


_BYTES = np.dtype(np.uint8)


def _aligned_empty(shape, dtype):
    """``np.empty(shape, dtype)`` starting on a ``cfg.ALIGN``-byte boundary (NumPy's own start 16
    bytes into a page or a malloc block): a vector load of the kernels' packed operands then
    never spans two cache lines."""
    dtype = np.dtype(dtype)
    # (math.prod, not np.prod: this runs for every kernel buffer of every call, and np.prod's
    # dispatch alone took half of its 6 us; a small call makes tens of these buffers)
    nbytes = int(shape if isinstance(shape, (int, np.integer)) else math.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + cfg.ALIGN, dtype=_BYTES)
    start = -kernels.address(raw) % cfg.ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _aligned_copy(a):
    """A C-contiguous, aligned copy of ``a`` (:func:`_aligned_empty`)."""
    out = _aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def _pad_k(a, kpad):
    """``a`` (..., K) with ``kpad`` zero channels appended, aligned (``a`` itself when kpad is 0)."""
    if not kpad:
        return a
    out = _aligned_empty(a.shape[:-1] + (a.shape[-1] + kpad,), a.dtype)
    out[..., :a.shape[-1]] = a
    out[..., a.shape[-1]:] = 0
    return out


def _padded(X, ph, pw, value=0.0, extra_h=0, extra_w=0):
    """X padded by (ph, pw) in front and (ph + extra_h, pw + extra_w) behind (aligned)."""
    m, H, W, C = X.shape
    out = _aligned_empty((m, H + 2 * ph + extra_h, W + 2 * pw + extra_w, C), X.dtype)
    _pad_copy(X, out, ph, pw, _scalar(X.dtype, value))
    return out


@register("zero_pad", NAME)
def zero_pad(p, X, out):
    _pad_copy(X, out, p.ph, p.pw, _scalar(p.dtype, 0))


# --------------------------------------------------------------------- convolution


def _padded_input(p, A_prev, extra_w=0):
    """The input zero-padded by (ph, pb) rows and (pw, pr) columns, with ``extra_w`` more zero
    columns behind (no copy when there is nothing to pad)."""
    if p.ph == p.pb == p.pw == p.pr == 0 and extra_w == 0:
        return A_prev
    return _padded(A_prev, p.ph, p.pw, 0.0, p.pb - p.ph, p.pr - p.pw + extra_w)


def _is_small(p):
    """Fewer multiply-adds than ``SERIAL_WORK``: the plain serial kernels run."""
    return _conv_work(p) < _SERIAL_WORK


def _pack_channels(M, T):
    """M (..., K) as (nkb, ..., T), C-contiguous and aligned (:func:`_aligned_empty`): block kb
    holds channels k0 .. k0+T-1 with k0 = min(kb*T, K-T) (the last block overlaps the one before
    when T does not divide K)."""
    K = M.shape[-1]
    nkb = -(-K // T)
    if K % T == 0:
        blocks = M.reshape(M.shape[:-1] + (nkb, T))
    else:
        k0 = np.minimum(np.arange(nkb) * T, K - T)
        blocks = M[..., k0[:, None] + np.arange(T)]
    nd = blocks.ndim  # (the block axis, nd - 2, first: np.moveaxis's checks cost more than the copy)
    blocks = blocks.transpose((nd - 2,) + tuple(range(nd - 2)) + (nd - 1,))
    out = _aligned_empty(blocks.shape, M.dtype)
    out[...] = blocks
    return out


def _gather_dZ(p, dZ, kpad=0):
    """dZ zero-padded (and, with ``kpad``, widened in k) so that every window index of the
    dA_prev gather lands inside: (dZp, plh, plw), plh/plw the top/left padding."""
    plh = (p.fh - 1 + p.sh - 1) // p.sh
    plw = (p.fw - 1 + p.sw - 1) // p.sw
    phh = max(0, (p.Hp - 1) // p.sh - p.Ho + 1)
    phw = max(0, (p.Wp - 1) // p.sw - p.Wo + 1)
    src = _pad_k(dZ, kpad)
    if plh or plw or phh or phw:
        return _padded(src, plh, plw, 0.0, phh - plh, phw - plw), plh, plw
    return src, plh, plw


def _fwd_kernel_call(X, Wm, bias, Z, sh, sw, tile=None, at=None, valid=None):
    """The forward tile kernel: Z = bias + the correlation of the padded input X (m, Hp, Wp, Cin)
    with Wm (fh, fw*Cin, K) at strides (sh, sw), in ``tile`` (P, T) where it fits, else in
    the tile the rule picks; on the row kernel or the pixel-run one (:func:`.tiles.fwd_plan`).
    Z (m, Hz, Wz, K) C-contiguous; ``at`` = (Ho, Wo, h0, hs, w0, ws): the output is the grid
    Z[:, h0::hs, w0::ws] of Ho x Wo pixels, written in place (default: the whole of Z).
    ``valid`` = (ra, rb): X's rows outside [ra, rb) are zeros (padding), whose taps the kernel
    skips (default: all rows data)."""
    m, Hx, Wx, Cin = X.shape
    ra, rb = (0, Hx) if valid is None else valid
    _, Hz, Wz, K = Z.shape
    assert Z.flags.c_contiguous  # (else the reshape below would copy, and the kernel write the copy)
    Ho, Wo, h0, hs, w0, ws = (Hz, Wz, 0, 1, 0, 1) if at is None else at
    P, T, rows = tiles.fwd_plan(X.dtype, K, Ho, Wo, Wm.shape[1], tile)
    Xr, Wp, bp = X.reshape(m, Hx, Wx * Cin), _pack_channels(Wm, T), _pack_channels(bias, T)
    out = (Z.reshape(m, Hz * Wz, K), Ho, Wo, h0 * Wz + w0, hs * Wz, ws)
    work = m * Ho * Wo * K * Wm.shape[0] * Wm.shape[1]
    if rows:  # (blocks within rows: less work a block; the same bits)
        _threaded(_CONV.FWD_ROWS[P, T], Xr, Wp, bp, *out, sh, sw, Cin, ra, rb, work=work)
    else:  # (blocks over the image's pixels, spanning rows: none computed twice at a row's end)
        _threaded(_CONV.FWD[P, T], Xr, Wp, bp, *out, sh, sw, Cin, ra, rb, tiles.fwd_group(P, m, Ho * Wo, _num_threads()),
                  work=work)


# ------------------------------------------------------- depthwise convolution
# groups = C_in (a channel multiplier M = K / C_in too), any stride, dilation and padding, even
# or not: the depthwise kernels (templates.dw_*) read the unpadded input, clipping each pixel's
# taps to it, with NB channels' sums in registers (NB: tiles.dw_row_block for the row-sliding
# builds, else the pooling blocks' rule, tiles.pool_block). dA_prev is the forward kernel's
# correlation of dZ with the flipped filters (per stride phase at stride > 1), except for dilation
# with stride > 1 (templates.dw_dA's gather).


def _is_depthwise(p) -> bool:
    return p.G == p.C and p.G > 1


def _depthwise_input(p, A_prev):
    """The input with each channel repeated M = K / C times (a channel multiplier), so that
    output channel k reads input channel k of it; A_prev itself when M = 1."""
    M = p.K // p.C
    return A_prev if M == 1 else np.repeat(A_prev, M, axis=3)


def _dw_forward_kernel(K, dtype, fw, sw, dw):
    """The depthwise forward for K channels: the row-sliding build where one exists for the
    filter width and column stride (no column dilation), else the generic one (the same bits)."""
    NB = tiles.dw_row_block(K, dtype)
    if dw == 1 and NB is not None and ("fwd_row", NB, fw, sw) in _DW.DW:
        return _DW.DW["fwd_row", NB, fw, sw]
    return _DW.DW["fwd", tiles.pool_block(K)]


def _dw_work(p):
    """A depthwise convolution's multiply-adds, from which its chunks are counted. (Whether it
    runs threaded at all still compares ``_conv_work(p)``, C times more, with the threshold:
    the rule its kernels were measured under.)"""
    return p.m * p.Ho * p.Wo * p.K * p.fh * p.fw


def _depthwise_forward(p, A_prev, W, b, Z):
    _run(_dw_forward_kernel(p.K, p.dtype, p.fw, p.sw, p.dw), _conv_work(p), _depthwise_input(p, A_prev),
         W.reshape(p.fh, p.fw, p.K), b, Z, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, chunk_work=_dw_work(p))


def _depthwise_backward(p, A_prev, W, dZ, dA_prev, dW, db):
    X = _depthwise_input(p, A_prev)
    work = _conv_work(p)
    mode = _MODE.get()
    nch = 1 if mode == SERIAL or (mode is None and work < _THREADED_WORK) else max(1, min(_num_threads(), p.m * p.Ho))
    part = _aligned_empty((nch, p.fh, p.fw, p.K), p.dtype)
    pdb = _aligned_empty((nch, p.K), p.dtype)
    NB = tiles.pool_block(p.K)
    zero = _scalar(p.dtype, 0)
    NBr = tiles.dw_row_block(p.K, p.dtype)
    dW_kernel = _DW.DW.get(("dW_row", NBr, p.fw)) if p.dw == 1 else None
    run_chunks(dW_kernel or _DW.DW["dW", NB], (X, dZ, part, pdb, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, zero),
               nch)  # a chunk per partial
    if nch == 1:
        dW.reshape(p.fh, p.fw, p.K)[:] = part[0]
        db[:] = pdb[0]
    else:
        kernels.sum_parts(part.reshape(nch, -1), dW.reshape(-1), 0, 1)
        kernels.sum_parts(pdb, db, 0, 1)
    if dA_prev is None:  # (no input gradient wanted)
        return
    M = p.K // p.C
    dX = dA_prev if M == 1 else _aligned_empty(X.shape, p.dtype)
    Wd = W.reshape(p.fh, p.fw, p.K)
    if p.sh == p.sw == 1:  # the correlation of dZ with the flipped filters: the forward kernel
        _run(_dw_forward_kernel(p.K, p.dtype, p.fw, 1, p.dw), work, dZ, _aligned_copy(Wd[::-1, ::-1]),
             np.zeros(p.K, dtype=p.dtype), dX, 1, 1, (p.fh - 1) * p.dh - p.ph, (p.fw - 1) * p.dw - p.pw, p.dh, p.dw,
             chunk_work=_dw_work(p))
    elif p.dh == p.dw == 1:  # per stride phase, the phase's taps' correlation (as _dA_prev does)
        zeros = np.zeros(p.K, dtype=p.dtype)
        NBr = tiles.dw_row_block(p.K, p.dtype)
        scratch = None
        for rh, h0, nh, nah, th, _ in _dA_phases(p.H, p.Ho, p.fh, p.sh, p.ph):
            for rw, w0, nw, naw, tw, _ in _dA_phases(p.W, p.Wo, p.fw, p.sw, p.pw):
                if nah == 0 or naw == 0:  # no tap reaches these pixels (stride > f)
                    dX[:, h0::p.sh, w0::p.sw] = 0
                    continue
                V = _aligned_copy(Wd[rh::p.sh, rw::p.sw][::-1, ::-1])
                if ("fwd_phase", NBr, naw) in _DW.DW:  # written in place
                    _run(_DW.DW["fwd_phase", NBr, naw], work, dZ, V, zeros, dX, nh, nw, h0, p.sh, w0, p.sw,
                         1, 1, th, tw, 1, 1, chunk_work=p.m * nh * nw * p.K * nah * naw)
                    continue
                if scratch is None:  # (one buffer for all phases)
                    scratch = _aligned_empty(p.m * -(-p.H // p.sh) * -(-p.W // p.sw) * p.K, p.dtype)
                out = scratch[:p.m * nh * nw * p.K].reshape(p.m, nh, nw, p.K)
                _run(_dw_forward_kernel(p.K, p.dtype, naw, 1, 1), work, dZ, V, zeros, out, 1, 1, th, tw, 1, 1,
                     chunk_work=out.size * nah * naw)
                _run(kernels.phase_scatter, work, out, dX, h0, p.sh, w0, p.sw, chunk_work=out.size)
    else:
        _run(_DW.DW["dA", NB], work, dZ, Wd, dX, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, zero, chunk_work=_dw_work(p))
    if M > 1:  # each input channel's gradient sums its M output channels' (in order)
        np.sum(dX.reshape(p.m, p.H, p.W, p.C, M), axis=4, out=dA_prev)


# ------------------------------------------- grouped and dilated convolution
# One padded input for all groups; per group, the forward tile kernel's grouped/dilated build
# (templates.conv_fwd_gd: a window row as fw runs of C_g channels, dilation*C apart) writes the
# group's output channels in place, and the dW kernels read the group's window columns through
# their (ja, jb) tables. dA_prev at stride 1 is the flipped, transposed filters' correlation with
# dZ padded by (f - 1) * dilation - pad (the same kernel); at stride > 1 (no dilation) each
# group runs the course path's per-phase dA_prev.


def _is_general(p) -> bool:
    return p.G > 1 or p.dh > 1 or p.dw > 1


def _gd_kernel_call(Xr, Wm, bias, Z, sh, sw, C, dh, dwC, goff, Cg, zoff, valid, work, tile=None):
    """One group's grouped/dilated forward tile: Z[..., zoff:zoff + Kg] = bias + the correlation
    of the Cg channels from goff of the padded input Xr (m, Hp, Wp*C), dilated (dh rows, dwC =
    the column dilation times C), with Wm (fh, fw*Cg, Kg), at strides (sh, sw); Xr's rows
    outside ``valid`` = (ra, rb) are zeros (see :func:`_fwd_kernel_call`). Tile and kernel
    by the NHWC forward's rule (:func:`.tiles.fwd_plan`; ``tile``, a variant's, where it fits):
    the row kernel (templates.conv_fwd_gd) or the pixel-run one (conv_fwd_gd_run), the same bits."""
    m, Ho, Wo, _ = Z.shape
    Kg = Wm.shape[2]
    P, T, rows = tiles.fwd_plan(Z.dtype, Kg, Ho, Wo, Wm.shape[1], tile)
    args = (Xr, _pack_channels(Wm, T), _pack_channels(bias, T))
    if rows:
        _threaded(_CONV.FWD_GD[P, T], *args, Z, sh, sw, C, dh, dwC, goff, Cg, zoff, Kg, *valid, work=work)
    else:
        _threaded(_CONV.FWD_GD_RUN[P, T], *args, Z.reshape(m, Ho * Wo, Z.shape[3]), Ho, Wo, sh, sw, C, dh, dwC,
                  goff, Cg, zoff, Kg, *valid, tiles.fwd_group(P, m, Ho * Wo, _num_threads()), work=work)


def _general_forward(p, A_prev, W, b, Z, tile=None):
    Xr = _padded_input(p, A_prev).reshape(p.m, p.Hp, p.Wp * p.C)
    Cg, Kg = p.C // p.G, p.K // p.G
    for g in range(p.G):
        ks = slice(g * Kg, (g + 1) * Kg)
        _gd_kernel_call(Xr, W[..., ks].reshape(p.fh, p.fw * Cg, Kg), b[ks], Z, p.sh, p.sw, p.C, p.dh, p.dw * p.C,
                        g * Cg, Cg, g * Kg, (p.ph, p.ph + p.H), _conv_work(p) // (p.G * p.G), tile)


def _general_backward(p, A_prev, W, dZ, dA_prev, dW, db):
    ew = (-p.Wp) % p.sw
    Xs = _padded_input(p, A_prev, ew).reshape(p.m, p.Hp, (p.Wp + ew) // p.sw, p.sw * p.C)
    Cg, Kg = p.C // p.G, p.K // p.G
    L = p.fw * Cg
    J, T = tiles.dw_tile(p.dtype, Kg, L)
    Kp, Lp = -(-Kg // T) * T, -(-L // J) * J
    nch = max(1, min(_num_threads(), p.m * p.Ho))
    kw, c = np.divmod(np.minimum(np.arange(Lp), L - 1), Cg)  # a window row's column j = kw*Cg + c
    part = _aligned_empty((nch, p.fh, Lp, Kp), p.dtype)
    pdb = _aligned_empty((nch, Kp), p.dtype)
    for g in range(p.G):
        ks = slice(g * Kg, (g + 1) * Kg)
        ja, jb = np.divmod(kw * (p.dw * p.C) + g * Cg + c, p.sw * p.C)
        # (never a strided view of dZ: it compiles the dW kernel for strided rows, whose dZ loads
        # do not vectorise; grouped dW ran 2.4x slower than the groups apart. The kernel reads
        # the group's channels of the whole dZ, or of the group's copy padded to Kp)
        if Kp > Kg:
            _dW_chunks(J, T, p, Xs, _pad_k(dZ[..., ks], Kp - Kg), part, pdb, ja, jb, p.dh)
        else:
            _dW_chunks(J, T, p, Xs, dZ, part, pdb, ja, jb, p.dh, g * Kg)
        if nch == 1:
            sums, dbs = part[0], pdb[0]
        else:
            sums, dbs = _aligned_empty(part.shape[1:], p.dtype), _aligned_empty(Kp, p.dtype)
            _run(kernels.sum_parts, sums.size, part.reshape(nch, -1), sums.reshape(-1))
            kernels.sum_parts(pdb, dbs, 0, 1)
        dW[..., ks] = sums[:, :L, :Kg].reshape(p.fh, p.fw, Cg, Kg)
        db[ks] = dbs[:Kg]
    if dA_prev is None:
        return
    if p.sh > 1 or p.sw > 1:  # (no dilation: _backward_handles)
        q = p._replace(C=Cg, K=Kg, G=1)
        dAg = _aligned_empty((p.m, p.H, p.W, Cg), p.dtype)
        for g in range(p.G):
            cs, ks = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
            _dA_prev(q, _aligned_copy(W[..., ks]), _aligned_copy(dZ[..., ks]), dAg)
            dA_prev[..., cs] = dAg
        return
    th, tw = (p.fh - 1) * p.dh - p.ph, (p.fw - 1) * p.dw - p.pw
    bh = p.H + (p.fh - 1) * p.dh - th - p.Ho
    Gz = _phase_input(dZ, th, bh, tw, p.W + (p.fw - 1) * p.dw - tw - p.Wo)
    Gr = Gz.reshape(p.m, Gz.shape[1], Gz.shape[2] * p.K)
    zeros = np.zeros(Cg, dtype=p.dtype)
    for g in range(p.G):
        ks = slice(g * Kg, (g + 1) * Kg)
        V = W[::-1, ::-1, :, ks].transpose(0, 1, 3, 2).reshape(p.fh, p.fw * Kg, Cg)
        _gd_kernel_call(Gr, V, zeros, dA_prev, 1, 1, p.K, p.dh, p.dw * p.K, g * Kg, Kg, g * Cg,
                        _phase_rows(th, bh, p.Ho), _conv_work(p) // (p.G * p.G))


def _handles(p) -> bool:
    """The numba backend computes every convolution itself in the forward: depthwise ones (any
    stride, dilation and padding), grouped and dilated ones, uneven padding."""
    return True


def _backward_handles(p) -> bool:
    """... and in the backward all but a dilated convolution at stride > 1 (not depthwise),
    which fastnn._lower runs as course calls."""
    return _is_depthwise(p) or p.dh == p.dw == 1 or p.sh == p.sw == 1


@register("conv_forward", NAME)
def conv_forward(p, A_prev, W, b, Z, tile=None):
    """``tile``: a forward tile variant (P, T), run on the tiled path whatever the work."""
    if not (Z.flags.c_contiguous and A_prev.flags.c_contiguous and W.flags.c_contiguous):
        Zn = Z.transpose(0, 3, 1, 2)  # (C-contiguous for channels-first views: _channels_first)
        if Zn.flags.c_contiguous and _channels_first(p, tile):
            _nchw_forward(p, _nchw_base(A_prev), W, b, Zn, tile)
        else:  # (any other strides: computed on C-contiguous copies, then copied in)
            out = Z if Z.flags.c_contiguous else _aligned_empty(Z.shape, Z.dtype)
            conv_forward(p, np.ascontiguousarray(A_prev), _hwck(W), b, out, tile)
            if out is not Z:
                _copy(out, Z)
        return
    if _is_depthwise(p):
        _depthwise_forward(p, A_prev, W, b, Z)
        return
    if tile is None and _is_small(p) and not _is_general(p):
        _fwd_small(A_prev, W, b, Z, p.sh, p.sw, p.ph, p.pw)
        return
    if _conv_serial_by_rule(p):
        _in_mode(SERIAL, conv_forward, p, A_prev, W, b, Z, tile)
        return
    if _is_general(p):
        _general_forward(p, A_prev, W, b, Z, tile)
        return
    _fwd_kernel_call(_padded_input(p, A_prev), W.reshape(p.fh, p.fw * p.C, p.K), b.reshape(p.K), Z, p.sh, p.sw,
                     tile, valid=(p.ph, p.ph + p.H))


conv_forward.handles = _handles


def _channels_first(p, tile=None) -> bool:
    """The tiled path (not depthwise, grouped, dilated or, with no tile variant, small) reads and
    writes NCHW arrays itself (``templates.conv_fwd_nchw``)."""
    return not (_is_depthwise(p) or _is_general(p) or (tile is None and _is_small(p)))


def _nchw_forward(p, Xn, W, b, Zn, tile):
    """The tiled forward on C-contiguous Xn (m, C, H, W) into Zn (m, K, Ho, Wo): the input's
    transpose (and padding) and the output's are fused into the kernel, per image and per
    output row in cache-resident buffers (a transposing pass over each whole array would add
    two memory passes to the call)."""
    if _conv_serial_by_rule(p):
        _in_mode(SERIAL, _nchw_forward, p, Xn, W, b, Zn, tile)
        return
    P, T = tile if tile is not None and tiles.fits(tile, p.K, p.Wo) else tiles.fwd_tile(p.dtype, p.K, p.Wo)
    _threaded(_CONV.FWD_NCHW[P, T], Xn, _packed_filters(p, W, T), _pack_channels(b.reshape(p.K), T), Zn,
              p.sh, p.sw, p.ph, p.pw, p.Hp, p.Wp, _blocked(p.C, p.H, p.W, p.dtype))
    # (one chunk a thread: each chunk transposes its images whole)


def _packed_filters(p, W, T):
    """``_pack_channels`` of the (fh, fw * C, K) filters, from HWCK W or, where W is the HWCK-shaped
    view of PyTorch's (K, C, fh, fw) filters (a channels-first call), straight from those."""
    Wk = W.transpose(3, 2, 0, 1)
    if W.flags.c_contiguous or not Wk.flags.c_contiguous:
        return _pack_channels(np.ascontiguousarray(W).reshape(p.fh, p.fw * p.C, p.K), T)
    out = _aligned_empty((-(-p.K // T), p.fh, p.fw * p.C, T), W.dtype)
    _run(kernels.pack_kchw, 4 * out.size, Wk, out)
    return out


def _hwck(W):
    """W (fh, fw, C, K) C-contiguous: W itself, or from the HWCK-shaped view of PyTorch's filters."""
    if W.flags.c_contiguous:
        return W
    Wk = np.ascontiguousarray(W.transpose(3, 2, 0, 1))
    out = _aligned_empty(W.shape, W.dtype)
    _run(kernels.kchw_to_hwck, 4 * out.size, Wk, out)
    return out


conv_forward.channels_first = _channels_first
_fwd_small = kernels.conv_fwd_small


@register("conv_backward", NAME)
def conv_backward(p, A_prev, W, dZ, dA_prev, dW, db, dw_t=None):
    """``dw_t``: a dW channel-tile variant T, run on the tiled path whatever the work."""
    if not (A_prev.flags.c_contiguous and W.flags.c_contiguous and dZ.flags.c_contiguous
            and (dA_prev is None or dA_prev.flags.c_contiguous)):
        if _channels_first(p, dw_t):  # channels-first views (where _channels_first(p) said so)
            _nchw_backward(p, A_prev, W, dZ, dA_prev, dW, db, dw_t)
        else:  # (any other strided arrays: copied, dA_prev computed apart and copied in)
            dA = dA_prev if dA_prev is None or dA_prev.flags.c_contiguous else _aligned_empty(dA_prev.shape, p.dtype)
            conv_backward(p, np.ascontiguousarray(A_prev), _hwck(W), np.ascontiguousarray(dZ), dA, dW, db, dw_t)
            if dA is not dA_prev:
                _copy(dA, dA_prev)
        return
    if _is_depthwise(p):
        _depthwise_backward(p, A_prev, W, dZ, dA_prev, dW, db)
        return
    if _is_general(p):
        if _conv_serial_by_rule(p):
            _in_mode(SERIAL, _general_backward, p, A_prev, W, dZ, dA_prev, dW, db)
        else:
            _general_backward(p, A_prev, W, dZ, dA_prev, dW, db)
        return
    if _conv_serial_by_rule(p) and not (dw_t is None and _is_small(p)):
        _in_mode(SERIAL, conv_backward, p, A_prev, W, dZ, dA_prev, dW, db, dw_t)
        return
    # The padded input, widened to a whole number of strides so that dW can view each row
    # as (Wp/sw, sw*C) pieces.
    ew = (-p.Wp) % p.sw
    Xp = _padded_input(p, A_prev, ew)
    Xs = Xp.reshape(p.m, p.Hp, (p.Wp + ew) // p.sw, p.sw * p.C)
    L = p.fw * p.C
    if dw_t is None and _is_small(p):
        if dA_prev is None:  # (no input gradient wanted: this kernel makes both, drop it)
            dA_prev = _aligned_empty(A_prev.shape, p.dtype)
        dZp, plh, plw = _gather_dZ(p, dZ)
        WT = _aligned_copy(W.transpose(0, 1, 3, 2))
        Zr = dZp.reshape(p.m, dZp.shape[1], dZp.shape[2] * p.K)
        kernels.conv_bwd_plain(Xp.reshape(p.m, p.Hp, -1), Zr, WT, dZ, dA_prev, dW.reshape(p.fh, L, p.K), db,
                         p.sh, p.sw, p.ph, p.pw, plh, plw)
        return
    _dW_tiled(p, Xs, dZ, dW, db, dw_t)
    del Xp, Xs
    if dA_prev is not None:  # (None: the caller wants no input gradient)
        _dA_prev(p, W, dZ, dA_prev)


def _dW_chunks(J, T, p, Xs, dZk, part, pdb, ja, jb, dh, koff=0):
    """The dW tile kernel (J, T), a chunk per partial of ``part``: Xs the padded input in stride
    pieces (m, Hp, Wp/sw, sw*C), dZk dZ (m, Ho, Wo, Kz), both C-contiguous, of whose channels
    part's Kp from ``koff`` are summed."""
    m, Hp, Wps, piece = Xs.shape
    run_chunks(_CONV.DW[J, T], (Xs.reshape(-1), dZk.reshape(-1, dZk.shape[3]), part, pdb,
                                p.Ho, p.Wo, Hp, Wps, piece, p.sh, ja, jb,
                                tiles.dw_rows(p.Wo, in_place=dZk.shape[3] <= T), dh, koff), part.shape[0])


def _dW_tiled(p, Xs, dZ, dW, db, dw_t):
    """dW and db by the dW tile kernel from the padded input Xs (m, Hp, (Wp + ew) / sw, sw * C)."""
    L = p.fw * p.C
    # dW and db: one partial per chunk of output rows (chunk count = thread count), summed
    # in chunk order: deterministic for a fixed thread count.
    # The dW kernel's tile is J input columns x T channels: K is zero-padded to a multiple
    # of T (only then is dZ copied) and the fw*C columns to one of J (repeating the last);
    # the padded channels' and columns' partials are dropped.
    J, T = tiles.dw_tile(p.dtype, p.K, L, dw_t if dw_t is not None and dw_t <= p.K else None)
    Kp = -(-p.K // T) * T
    dZk = _pad_k(dZ, Kp - p.K)
    Lp = -(-L // J) * J
    nch = max(1, min(_num_threads(), p.m * p.Ho))
    part = _aligned_empty((nch, p.fh, Lp, Kp), p.dtype)
    pdb = _aligned_empty((nch, Kp), p.dtype)
    ja, jb = np.divmod(np.minimum(np.arange(Lp), L - 1), p.sw * p.C)
    _dW_chunks(J, T, p, Xs, dZk, part, pdb, ja, jb, 1)
    if nch == 1:
        sums, dbs = part[0], pdb[0]
    else:
        sums, dbs = _aligned_empty(part.shape[1:], p.dtype), _aligned_empty(Kp, p.dtype)
        _run(kernels.sum_parts, sums.size, part.reshape(nch, -1), sums.reshape(-1))
        kernels.sum_parts(pdb, dbs, 0, 1)
    dW.reshape(p.fh, L, p.K)[:] = sums[:, :L, :p.K]
    db[:] = dbs[:p.K]


conv_backward.input_grad_optional = True  # dA_prev None: skipped (see _dispatch.OPS)
conv_backward.handles = _backward_handles
conv_backward.channels_first = _channels_first


def _nchw_backward(p, A_prev, W, dZ, dA_prev, dW, db, dw_t):
    """The backward on channels-first arrays, seen through NHWC-shaped views (any strides, in
    fact): dW needs the input and dZ in NHWC, so they are copied so (the input straight into
    its padded buffer, the copy the NHWC path makes anyway where there is padding); dA_prev at stride 1 is the
    channels-first forward kernel's correlation of dZ (its padding fused in) written straight
    into the NCHW dA_prev; any other dA_prev is computed in NHWC and copied in."""
    if _conv_serial_by_rule(p):
        _in_mode(SERIAL, _nchw_backward, p, A_prev, W, dZ, dA_prev, dW, db, dw_t)
        return
    W = _hwck(W)
    ew = (-p.Wp) % p.sw
    Xp = _aligned_empty((p.m, p.Hp, p.Wp + ew, p.C), p.dtype)
    _run(kernels.nchw_to_nhwc, 4 * Xp.size, _nchw_base(A_prev), Xp, p.ph, p.pw, _blocked(p.C, p.H, p.W, p.dtype))
    dZc = _aligned_empty(dZ.shape, p.dtype)
    _run(kernels.nchw_to_nhwc, 4 * dZc.size, _nchw_base(dZ), dZc, 0, 0, _blocked(p.K, p.Ho, p.Wo, p.dtype))
    _dW_tiled(p, Xp.reshape(p.m, p.Hp, (p.Wp + ew) // p.sw, p.sw * p.C), dZc, dW, db, dw_t)
    del Xp
    if dA_prev is None:
        return
    if not dA_prev.flags.c_contiguous and _dA_nchw_applies(p, dA_prev, dZ):
        th, tw = p.fh - 1 - p.ph, p.fw - 1 - p.pw
        V = W[::-1, ::-1].transpose(0, 1, 3, 2).reshape(p.fh, p.fw * p.K, p.C)
        Pq, T = tiles.fwd_tile(p.dtype, p.C, p.W)
        _threaded(_CONV.FWD_NCHW[Pq, T], dZ.transpose(0, 3, 1, 2), _pack_channels(V, T),
                  _pack_channels(np.zeros(p.C, dtype=p.dtype), T), dA_prev.transpose(0, 3, 1, 2), 1, 1, th, tw,
                  p.H + p.fh - 1, p.W + p.fw - 1, _blocked(p.K, p.Ho, p.Wo, p.dtype))  # (as in _nchw_forward)
    elif dA_prev.flags.c_contiguous:
        _dA_prev(p, W, dZc, dA_prev)
    else:
        out = _aligned_empty(dA_prev.shape, p.dtype)
        _dA_prev(p, W, dZc, out)
        if dA_prev.transpose(0, 3, 1, 2).flags.c_contiguous:
            _run(kernels.nhwc_to_nchw, 4 * out.size, out, dA_prev.transpose(0, 3, 1, 2))
        else:
            _copy(out, dA_prev)


def _blocked(C, H, W, dtype) -> bool:
    """Whether a channels-first array's (C, H, W) images are transposed in blocks of 8 channels
    (:func:`.tiles.transpose_blocked`)."""
    return tiles.transpose_blocked(C, H * W * np.dtype(dtype).itemsize)


def _nchw_base(X):
    """The C-contiguous (m, C, H, W) array an NHWC-shaped view shows (a copy where it is none)."""
    return np.ascontiguousarray(X.transpose(0, 3, 1, 2))


def _dA_nchw_applies(p, dA_prev, dZ) -> bool:
    """dA_prev by the channels-first forward kernel: stride 1, dZ padded (never cropped) by the
    filter size less the padding, where the per-phase forward kernel would run (not the
    few-channel kernels), on C-contiguous NCHW dZ and dA_prev."""
    lanes = tiles.DA_KVEC_L[p.dtype]
    return (p.sh == 1 and p.sw == 1 and max(p.ph, p.pb) < p.fh and max(p.pw, p.pr) < p.fw
            and not _dA_px_applies(p) and not (p.C <= 4 and p.K >= lanes)
            and dZ.transpose(0, 3, 1, 2).flags.c_contiguous and dA_prev.transpose(0, 3, 1, 2).flags.c_contiguous)


def _dA_phases(n, n_out, f, s, pad):
    """The stride phases of one dimension of dA_prev as stride-1 correlations of dZ: for each
    phase r (padded index q*s + r) with an input index, (r, first input index, count,
    taps na = len(range(r, f, s)), dZ's zero padding in front, behind; negative: dZ
    cropped there, its rows no input pixel of the phase reaches)."""
    out = []
    for r in range(s):
        na = len(range(r, f, s))
        q_lo = -((r - pad) // s)  # ceil((pad - r) / s): the first q with q*s + r - pad >= 0
        nq = (pad + n - 1 - r) // s - q_lo + 1
        if nq <= 0:
            continue
        front = na - 1 - q_lo
        behind = nq + na - 1 - n_out - front
        out.append((r, q_lo * s + r - pad, nq, na, front, behind))
    return out


def _most_behind(phases):
    """For each front padding among ``_dA_phases``' phases with taps, the most padding behind."""
    most = {}
    for _, _, _, na, front, behind in phases:
        if na:
            most[front] = max(most.get(front, behind), behind)
    return most


def _phase_rows(top, bottom, n):
    """The rows [ra, rb) of :func:`_phase_input`'s array (n rows of dZ padded by top and bottom,
    cropped where negative) that hold dZ's rows, not padding."""
    ra = max(top, 0)
    return ra, ra + n - max(0, -top) - max(0, -bottom)


def _phase_input(dZ, top, bottom, left, right):
    """dZ zero-padded by (top, bottom, left, right); a negative amount crops dZ there."""
    if min(top, bottom, left, right) < 0:
        m, Ho, Wo, _ = dZ.shape
        dZ = np.ascontiguousarray(dZ[:, max(0, -top):Ho - max(0, -bottom), max(0, -left):Wo - max(0, -right)])
        top, bottom, left, right = max(top, 0), max(bottom, 0), max(left, 0), max(right, 0)
    if top or bottom or left or right:
        return _padded(dZ, top, left, 0.0, bottom - top, right - left)
    return dZ


def _dA_px_applies(p) -> bool:
    """The pixel-vectorised few-channel dA_prev: C_in <= 4, stride 1, pads below the filter on
    every side (dZ is then padded, never cropped: ``kernels.planar_pad`` writes each dZ row whole
    into a row of W + fw - 1 columns) and at least one pixel block per row."""
    return (p.C <= 4 and p.dtype in tiles.DA_PX_P and p.sh == 1 and p.sw == 1 and max(p.ph, p.pb) < p.fh
            and max(p.pw, p.pr) < p.fw and p.W >= tiles.DA_PX_P[p.dtype][p.C])


def _dA_prev(p, W, dZ, dA_prev):
    """dA_prev by the few-channel gather (C_in <= 4) or per stride phase by the forward kernel."""
    if _dA_px_applies(p):
        # Few input channels at stride 1: a correlation of the planar padded dZ with W flipped,
        # vectorised over output pixels (no sum of lanes per output value, as below).
        P = tiles.DA_PX_P[p.dtype][p.C]
        th, tw = p.fh - 1 - p.ph, p.fw - 1 - p.pw
        Zt = _aligned_empty((p.m, p.H + p.fh - 1, p.K, p.W + p.fw - 1), p.dtype)
        _run(kernels.planar_pad, Zt.size, dZ, Zt, th, tw, _scalar(p.dtype, 0))
        Wf = _aligned_copy(W[::-1, ::-1].transpose(0, 1, 3, 2))
        _threaded(_CONV.DA_PX[p.C, P], Zt, Wf, dA_prev, _scalar(p.dtype, 0), work=_conv_work(p))
        return
    lanes = tiles.DA_KVEC_L[p.dtype]
    if p.C <= 4 and p.K >= lanes:
        # Few input channels: the gather sums over k in SIMD lanes, with dZ and W zero-padded
        # in k to whole lanes.
        kpad = (-p.K) % lanes
        dZp, plh, plw = _gather_dZ(p, dZ, kpad)
        Wk = _pad_k(W, kpad)
        nkl = (p.K + kpad) // lanes
        _threaded(_CONV.DA[p.C, lanes], dZp.reshape(dZp.shape[:3] + (nkl, lanes)),
                  Wk.reshape(p.fh, p.fw, p.C, nkl, lanes), dA_prev, p.sh, p.sw, p.ph, p.pw, plh, plw, _scalar(p.dtype, 0),
                  work=_conv_work(p))
        return
    # Per stride phase (the input pixels hp = q*s + r of one r), dA_prev is a stride-1
    # correlation of dZ, zero-padded (or cropped), with the phase's taps W[r::s] flipped in
    # (kh, kw) and transposed to (K, C): the forward tile kernel, at the forward's speed and
    # with no kernel of its own to compile. Each phase is written in place, into its grid of
    # dA_prev (stride 1: one phase, the whole of it).
    zeros = np.zeros(p.C, dtype=p.dtype)
    rows = _dA_phases(p.H, p.Ho, p.fh, p.sh, p.ph)
    cols = _dA_phases(p.W, p.Wo, p.fw, p.sw, p.pw)
    # Phases with the same front padding share one padded dZ, padded behind as much as the
    # most any of them needs (a phase never reads past its own rows and columns).
    behind_h, behind_w = _most_behind(rows), _most_behind(cols)
    inputs = {}
    for rh, h0, nh, nah, th, _ in rows:
        for rw, w0, nw, naw, tw, _ in cols:
            if nah == 0 or naw == 0:  # no tap reaches these pixels (stride > f)
                dA_prev[:, h0::p.sh, w0::p.sw] = 0
                continue
            if (th, tw) not in inputs:
                inputs[th, tw] = _phase_input(dZ, th, behind_h[th], tw, behind_w[tw])
            G = inputs[th, tw]
            V = W[rh::p.sh, rw::p.sw][::-1, ::-1].transpose(0, 1, 3, 2).reshape(nah, naw * p.K, p.C)
            _fwd_kernel_call(G, V, zeros, dA_prev, 1, 1, at=(nh, nw, h0, p.sh, w0, p.sw),
                             valid=_phase_rows(th, behind_h[th], p.Ho))


# ------------------------------------------------------------------------ pooling


def _inv_area(p):
    """An average's 1 / area, rounded once in the dtype: the forward and the backward multiply by it."""
    return _inv_of(p.dtype, p.fh * p.fw)


@functools.lru_cache(maxsize=256)
def _inv_of(dtype, n):
    return dtype.type(1) / dtype.type(n)


def _pool(kind, p, work, *args, nb=None):
    """Run the pooling kernel ``kind`` in the channel block ``nb`` where it fits C, else in
    the widest that fits (``tiles.POOL_NB``)."""
    _run(_POOL.POOL[kind, nb if nb is not None and nb <= p.C else tiles.pool_block(p.C)], work, *args)


@register("pool_forward", NAME)
def pool_forward(p, A_prev, A, nb=None):
    """``nb``: a channel-block variant."""
    work = _pool_work(p)
    if p.mode == "max":
        _pool("max", p, work, A_prev, A, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, _scalar(p.dtype, -np.inf), nb=nb)
    else:
        _pool("avg", p, work, A_prev, A, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, _inv_area(p), _scalar(p.dtype, 0), nb=nb)


def _pool_handles(p) -> bool:
    """The pooling kernels clip every window to the input, so uneven pads and ceil_mode's
    windows past the padding need nothing more; an average's divisors other than the whole
    window's are fastnn._lower's (a rescale)."""
    return p.divisor == "area"


pool_forward.handles = _pool_handles
_EMPTY_IDX = np.zeros((1, 1, 1, 1), dtype=np.int32)
_AVG_GATHER = _POOL.POOL["avg_bwd_gather", tiles.GATHER_REG_NB]


@register("pool_backward", NAME)
def pool_backward(p, A_prev, dA, dA_prev, nb=None):
    """``nb``: a channel-block variant (for the kernels that come in blocks)."""
    work = _pool_work(p)
    inv = _inv_area(p)
    ninf = _scalar(p.dtype, -np.inf)
    if p.sh >= p.fh and p.sw >= p.fw:
        # Non-overlapping windows: one pass, each window writes its own positions.
        if (p.sh > p.fh or p.sw > p.fw or (p.Ho - 1) * p.sh + p.fh - p.ph < p.H
                or (p.Wo - 1) * p.sw + p.fw - p.pw < p.W):
            dA_prev.fill(0)  # some positions lie in no window
        if p.mode == "average":
            _run(kernels.pool_avg_bwd_direct, work, dA, dA_prev, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, inv)
        else:
            _pool("max_bwd_direct" if p.ties == "all" else "first_bwd_direct", p, work, A_prev, dA,
                  dA_prev, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, ninf, _scalar(p.dtype, 0), nb=nb)
        return
    if p.mode == "max" and p.ties == "all":
        # One pass over A_prev: each row of window maxima is computed when the gather first
        # needs it (faster than writing them all first and reading them back).
        _pool("max_bwd_gather", p, work, A_prev, dA, dA_prev, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw,
              ninf, _scalar(p.dtype, 0), nb=nb)
        return
    Idx = _EMPTY_IDX
    if p.mode == "average":
        if p.C >= tiles.GATHER_REG_NB:  # the same sums in registers
            _run(_AVG_GATHER, work, dA, dA_prev, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, inv, _scalar(p.dtype, 0))
            return
        mode = 2
    else:
        mode = 1
        Idx = np.empty(dA.shape, dtype=np.int32)
        _pool("argmax", p, work, A_prev, Idx, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, ninf, nb=nb)
    # Ties "first", and average with C < GATHER_REG_NB: the gather streams whole channel
    # rows (the loop vectoriser's job; register blocks measured no faster for the argmax
    # gather: it runs at about the speed of copying X).
    _run(kernels.pool_bwd, work, Idx, dA, dA_prev, p.fh, p.fw, p.sh, p.sw, p.ph, p.pw, mode, inv,
         _scalar(p.dtype, 0))


pool_backward.handles = _pool_handles


# ---------------------------------------------------------------------- variants
# Alternatives to the tile rules above, declared to the registry for the planner to time
# (``fastnn tune``; :mod:`fastnn._plan`). Each applies where it fits the call and differs from
# what the rule picks; a pinned ``backend="numba"`` never runs one.


def _fwd_variant_applies(tile, p):
    # (in the NHWC kernel's terms, tiles.fwd_plan, whatever p.layout: a channels-first call runs
    # a tile only where it fits a row, else the rule's; the planner times it as called. Grouped
    # and dilated calls: in a group's terms, K/G channels from fw*C/G columns. Depthwise calls
    # run their own kernels, whatever the tile: a variant would be the same call)
    if tile not in tiles.FWD_VARIANTS[p.dtype] or _is_small(p) or _is_depthwise(p):
        return False
    args = (p.dtype, p.K // p.G, p.Ho, p.Wo, p.fw * (p.C // p.G))
    return tiles.fwd_plan(*args, tile)[:2] == tile != tiles.fwd_plan(*args)[:2]


def _dw_variant_applies(t, p):
    # (any dtype's widths: a float64 tile of 16 channels holds 64 accumulators, which fit in
    # AVX-512's registers; none for grouped, depthwise and dilated calls, as above)
    return (t <= p.K and not _is_small(p) and not _is_general(p)
            and t != tiles.dw_tile(p.dtype, p.K, p.fw * p.C)[1])


def _pool_variant_applies(backward, nb, p):
    # (average pooling's backward kernels do not come in blocks)
    return nb <= p.C and nb != tiles.pool_block(p.C) and not (backward and p.mode == "average")


_VARIANT_ATTRS = ("handles", "input_grad_optional", "channels_first")


def _variant_of(kernel, fn, *args, **kwargs):
    """``fn`` with arguments bound, a variant of the registered ``kernel`` for the registry: it
    computes what ``kernel`` computes (the dispatcher reads ``kernel``'s :data:`_VARIANT_ATTRS`,
    copied here; a variant without ``handles`` got a grouped, dilated or unevenly padded call
    only broken into course calls)."""
    variant = functools.partial(fn, *args, **kwargs)
    for attr in _VARIANT_ATTRS:
        if hasattr(kernel, attr):
            setattr(variant, attr, getattr(kernel, attr))
    return variant


def _declare_variants():
    for tile in sorted({t for ts in tiles.FWD_VARIANTS.values() for t in ts}):
        variant = _variant_of(conv_forward, conv_forward, tile=tile)
        variant.channels_first = functools.partial(_channels_first, tile=tile)
        register("conv_forward", NAME, variant="p%dt%d" % tile, applies=functools.partial(_fwd_variant_applies, tile))(
            variant)
    for t in sorted({t for ts in tiles.BWD_T.values() for t in ts if t > 1}):
        variant = _variant_of(conv_backward, conv_backward, dw_t=t)
        variant.channels_first = functools.partial(_channels_first, tile=t)
        register("conv_backward", NAME, variant="dwt%d" % t, applies=functools.partial(_dw_variant_applies, t))(
            variant)
    # (the rule takes the widest block that fits, so only narrower ones are alternatives; a
    # block of one channel is never faster than a wider one)
    for nb in tiles.POOL_NB[1:-1]:
        for op, fn in (("pool_forward", pool_forward), ("pool_backward", pool_backward)):
            applies = functools.partial(_pool_variant_applies, op == "pool_backward", nb)
            register(op, NAME, variant="nb%d" % nb, applies=applies)(_variant_of(fn, fn, nb=nb))


def _mode_applies(mode, work, threshold, p):
    """The "serial" variant where the rule threads the call, "threaded" where it does not
    (calls too small to split, or with one thread, have neither)."""
    if cfg.num_threads() < 2 or work(p) < _SERIAL_WORK:
        return False
    return (work(p) >= threshold) == (mode == SERIAL)


def _declare_thread_variants():
    for op, fn, work, threshold in (
            ("conv_forward", conv_forward, _conv_work, _THREADED_CONV_WORK),
            ("conv_backward", conv_backward, _conv_work, _THREADED_CONV_WORK),
            ("pool_forward", pool_forward, _pool_work, _THREADED_WORK),
            ("pool_backward", pool_backward, _pool_work, _THREADED_WORK)):
        for mode in (SERIAL, THREADED):
            register(op, NAME, variant=mode, applies=functools.partial(_mode_applies, mode, work, threshold))(
                _variant_of(fn, _in_mode, mode, fn))


_declare_variants()
_declare_thread_variants()


# -------------------------------------------------------------------- activations


def _flat(a):
    return a.reshape(-1)


@register("relu", NAME)
def relu(x, out):
    _run(kernels.relu, 4 * x.size, _flat(x), _flat(out), _scalar(out.dtype, 0))


@register("relu_backward", NAME)
def relu_backward(dA, Z, out):
    _run(kernels.relu_backward, 4 * dA.size, _flat(dA), _flat(Z), _flat(out), _scalar(out.dtype, 0))


@register("sigmoid", NAME)
def sigmoid(x, out):
    _run(kernels.sigmoid, 16 * x.size, _flat(x), _flat(out), _scalar(out.dtype, 1))


@register("sigmoid_backward", NAME)
def sigmoid_backward(dA, Z, out):
    _run(kernels.sigmoid_backward, 16 * dA.size, _flat(dA), _flat(Z), _flat(out), _scalar(out.dtype, 1))
