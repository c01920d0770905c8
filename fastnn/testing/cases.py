"""Named, seeded test cases shared by the tests and the benchmarks.

``CONV_CASES`` and ``POOL_CASES`` are small edge cases (fast enough for the reference
backend) covering odd sizes, stride > f, pad > f, batch 1, one channel, non-square
windows and strides, non-contiguous inputs and max-pool ties, and every option beyond the
course's: dilation, groups (depthwise too), "same"/"valid"/uneven padding, NCHW arrays,
pooling's ceil_mode and count_include_pad, alone and combined. ``BENCH_CONV_SHAPES`` and
``BENCH_POOL_SHAPES`` are the benchmark table (NHWC). Every ``make`` is deterministic in
its ``seed``.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple, Union

import numpy as np

from .._params import _pair, conv_params, pool_params
from .tolerance import TOLERANCES  # noqa: F401  (the rule lives in fastnn.testing.tolerance)

__all__ = [
    "ConvCase",
    "PoolCase",
    "CONV_CASES",
    "POOL_CASES",
    "BENCH_CONV_SHAPES",
    "BENCH_POOL_SHAPES",
    "DTYPES",
    "TOLERANCES",
    "conv_case",
    "pool_case",
]

IntOrPair = Union[int, Tuple[int, int]]
DTYPES = (np.float32, np.float64)


def _noncontig(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """The same values as ``x`` as a non-contiguous view (every other element of a bigger array)."""
    big = np.empty(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    big[..., ::2] = x
    big[..., 1::2] = rng.standard_normal(x.shape).astype(x.dtype)
    view = big[..., ::2]
    assert not view.flags.c_contiguous
    return view


def _zeros(shape, dtype=np.float64):
    return np.broadcast_to(np.zeros((), dtype), shape)  # (no allocation: for params only)


def _nchw(x: np.ndarray) -> np.ndarray:
    """An NHWC array's values as an (m, C, H, W) C-contiguous array."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclasses.dataclass(frozen=True)
class ConvCase:
    name: str
    m: int
    H: int
    W: int
    C: int
    f: IntOrPair
    K: int
    stride: IntOrPair
    pad: Union[IntOrPair, str, Tuple[Tuple[int, int], Tuple[int, int]]]
    noncontig: bool = False
    dilation: IntOrPair = 1
    groups: int = 1
    layout: str = "NHWC"

    @property
    def hparameters(self) -> dict:
        hp = {"stride": self.stride, "pad": self.pad}
        for key, default in (("dilation", 1), ("groups", 1), ("layout", "NHWC")):
            if getattr(self, key) != default:
                hp[key] = getattr(self, key)
        return hp

    @property
    def course(self) -> bool:
        """A call the course's own conv_forward takes: int f, stride and pad, nothing else."""
        return (all(type(v) is int for v in (self.f, self.stride, self.pad))
                and list(self.hparameters) == ["stride", "pad"])

    @property
    def params(self):
        """The checked params of the call (NHWC terms, as the kernels see it; ``layout`` the case's)."""
        fh, fw = _pair(self.f)
        G = self.groups
        if self.layout == "NCHW":
            shapes = (self.m, self.C, self.H, self.W), (self.K, self.C // G, fh, fw)
        else:
            shapes = (self.m, self.H, self.W, self.C), (fh, fw, self.C // G, self.K)
        return conv_params(_zeros(shapes[0]), _zeros(shapes[1]), _zeros((self.K,)), self.hparameters)

    @property
    def out_hw(self) -> Tuple[int, int]:
        p = self.params
        return p.Ho, p.Wo

    @property
    def flops(self) -> int:
        return self.params.flops

    def make(self, dtype=np.float64, seed: int = 0):
        """(A_prev, W, b, hparameters, dZ) drawn from ``RandomState(seed)`` (NCHW arrays for an
        NCHW case: the same values as its NHWC twin's, transposed)."""
        rng = np.random.RandomState(seed)
        fh, fw = _pair(self.f)
        Cg = self.C // self.groups
        A = rng.standard_normal((self.m, self.H, self.W, self.C)).astype(dtype)
        W = (rng.standard_normal((fh, fw, Cg, self.K)) / np.sqrt(fh * fw * Cg)).astype(dtype)
        b = rng.standard_normal((1, 1, 1, self.K)).astype(dtype)
        Ho, Wo = self.out_hw
        dZ = rng.standard_normal((self.m, Ho, Wo, self.K)).astype(dtype)
        if self.layout == "NCHW":
            A, dZ, W, b = _nchw(A), _nchw(dZ), np.ascontiguousarray(W.transpose(3, 2, 0, 1)), b.reshape(self.K)
        if self.noncontig:
            A, W, dZ = _noncontig(A, rng), _noncontig(W, rng), _noncontig(dZ, rng)
        return A, W, b, self.hparameters, dZ


@dataclasses.dataclass(frozen=True)
class PoolCase:
    name: str
    m: int
    H: int
    W: int
    C: int
    f: IntOrPair
    stride: IntOrPair
    pad: Union[IntOrPair, str, Tuple[Tuple[int, int], Tuple[int, int]]] = 0
    noncontig: bool = False
    ties: bool = False  # draw small integers so that windows hold equal maxima
    ceil_mode: bool = False
    count_include_pad: bool = True  # (average pooling's; max pooling ignores it)
    layout: str = "NHWC"

    @property
    def hparameters(self) -> dict:
        hp = {"f": self.f, "stride": self.stride}
        if self.pad != 0:
            hp["pad"] = self.pad
        for key, default in (("ceil_mode", False), ("count_include_pad", True), ("layout", "NHWC")):
            if getattr(self, key) != default:
                hp[key] = getattr(self, key)
        return hp

    @property
    def course(self) -> bool:
        """A call the course's own pool_forward takes: int f and stride, no padding, nothing else."""
        return type(self.f) is int and type(self.stride) is int and list(self.hparameters) == ["f", "stride"]

    @property
    def out_hw(self) -> Tuple[int, int]:
        shape = (self.m, self.C, self.H, self.W) if self.layout == "NCHW" else (self.m, self.H, self.W, self.C)
        p = pool_params(_zeros(shape), self.hparameters, "average")
        return p.Ho, p.Wo

    def make(self, dtype=np.float64, seed: int = 0):
        """(A_prev, hparameters, dA) drawn from ``RandomState(seed)`` (NCHW for an NCHW case)."""
        rng = np.random.RandomState(seed)
        shape = (self.m, self.H, self.W, self.C)
        if self.ties:
            A = rng.randint(-2, 3, size=shape).astype(dtype)
        else:
            A = rng.standard_normal(shape).astype(dtype)
        Ho, Wo = self.out_hw
        dA = rng.standard_normal((self.m, Ho, Wo, self.C)).astype(dtype)
        if self.layout == "NCHW":
            A, dA = _nchw(A), _nchw(dA)
        if self.noncontig:
            A, dA = _noncontig(A, rng), _noncontig(dA, rng)
        return A, self.hparameters, dA


#: Small edge cases for the equivalence matrix (the reference backend runs each in well under a second).
CONV_CASES: Dict[str, ConvCase] = {c.name: c for c in [
    ConvCase("course", 10, 4, 4, 3, 2, 8, 2, 2),
    ConvCase("odd_sizes", 2, 7, 5, 3, 3, 5, 1, 1),
    ConvCase("stride_gt_f", 2, 11, 10, 2, 2, 3, 3, 0),
    ConvCase("pad_gt_f", 2, 5, 4, 2, 2, 3, 1, 3),
    ConvCase("batch1", 1, 6, 6, 4, 3, 2, 1, 0),
    ConvCase("channel1", 3, 6, 7, 1, 3, 1, 2, 1),
    ConvCase("nonsquare", 2, 7, 6, 3, (3, 2), 4, (2, 1), (1, 0)),
    ConvCase("pointwise", 2, 5, 5, 6, 1, 4, 1, 0),
    ConvCase("strided_nonsquare_pad", 2, 9, 8, 3, (2, 3), 5, (3, 2), (2, 1)),
    ConvCase("wide_channels", 2, 6, 6, 20, 3, 33, 1, 1),
    ConvCase("noncontig", 2, 6, 5, 3, 3, 4, 2, 1, noncontig=True),
    # enough channels and pixels for the numba backend's tiled kernels and all their variants
    ConvCase("many_channels", 2, 9, 12, 40, 3, 64, 1, 1),
    ConvCase("many_channels_s2", 2, 11, 19, 36, 3, 40, 2, 0),
    # beyond the course: dilation (alone, strided, coprime with the stride), groups and
    # depthwise (with a channel multiplier), TensorFlow's "same" (even and odd totals, strided),
    # "valid", uneven explicit padding, NCHW arrays, and combinations of them
    ConvCase("dilated", 2, 9, 9, 3, 3, 4, 1, 2, dilation=2),
    ConvCase("dilated_nonsquare_strided", 2, 9, 8, 2, (3, 2), 3, (2, 1), (1, 2), dilation=(2, 3)),
    ConvCase("dilation3_stride2", 1, 11, 10, 2, 3, 3, 2, 1, dilation=3),
    ConvCase("groups2", 2, 7, 6, 4, 3, 6, 1, 1, groups=2),
    ConvCase("depthwise", 2, 8, 7, 6, 3, 6, 1, 1, groups=6),
    ConvCase("depthwise_multiplier_s2", 2, 7, 6, 3, 3, 6, 2, "same", groups=3),
    ConvCase("same_even_f", 2, 7, 6, 3, 2, 4, 1, "same"),
    ConvCase("same_strided", 2, 8, 9, 3, 3, 5, 2, "same"),
    ConvCase("same_dilated", 2, 7, 8, 3, 3, 4, 1, "same", dilation=2),
    ConvCase("valid", 2, 6, 7, 3, 3, 4, 1, "valid"),
    ConvCase("uneven_pad", 2, 6, 5, 3, 3, 4, 1, ((0, 2), (1, 0))),
    ConvCase("nchw", 2, 7, 6, 3, 3, 5, 1, 1, layout="NCHW"),
    ConvCase("nchw_grouped_dilated_same", 1, 9, 8, 4, 3, 6, 2, "same", dilation=2, groups=2, layout="NCHW"),
    # channels-first with enough channels for the numba backend's tiled kernels (which read and
    # write NCHW themselves), strided with uneven padding too
    ConvCase("many_channels_nchw", 2, 9, 12, 40, 3, 64, 1, 1, layout="NCHW"),
    ConvCase("many_channels_nchw_s2_uneven", 2, 11, 19, 36, 3, 40, 2, ((0, 2), (1, 0)), layout="NCHW"),
    # (16 x 16 planes: more channel rows in one L1 set than it has ways, for the input and dZ alike:
    # the numba backend's transposes read them in blocks of 8, the last one shifted back)
    ConvCase("nchw_channel_rows_share_sets", 2, 16, 16, 37, 3, 40, 1, 1, layout="NCHW"),
    ConvCase("groups_dilated_uneven", 1, 8, 7, 3, (2, 3), 6, (1, 2), ((2, 1), (0, 3)), dilation=(3, 2), groups=3),
    # enough channels for the numba backend's tiled and vectorised kernels
    ConvCase("many_channels_dilated", 2, 12, 14, 40, 3, 48, 1, 2, dilation=2),
    ConvCase("many_channels_depthwise", 2, 10, 11, 40, 3, 40, 1, 1, groups=40),
    ConvCase("many_channels_depthwise_s2", 2, 13, 12, 36, 5, 72, 2, "same", dilation=2, groups=36),
    ConvCase("many_channels_groups4", 2, 9, 10, 32, 3, 48, 1, 1, groups=4),
]}

POOL_CASES: Dict[str, PoolCase] = {c.name: c for c in [
    PoolCase("course", 2, 4, 4, 3, 4, 1),
    PoolCase("course_backward", 5, 5, 3, 2, 2, 1),
    PoolCase("p2s2", 2, 8, 8, 3, 2, 2),
    PoolCase("overlap_p3s2", 2, 9, 9, 2, 3, 2),
    PoolCase("nontiling", 2, 7, 8, 3, 2, 2),
    PoolCase("stride_gt_f", 2, 10, 9, 2, 2, 3),
    PoolCase("nonsquare", 2, 7, 6, 3, (3, 2), (1, 2)),
    PoolCase("batch1_channel1", 1, 6, 6, 1, 3, 1),
    PoolCase("padded", 2, 7, 7, 2, 3, 2, pad=1),
    PoolCase("ties", 3, 8, 8, 3, 3, 1, ties=True),
    PoolCase("ties_p2s2", 2, 8, 8, 4, 2, 2, ties=True),
    PoolCase("noncontig", 2, 6, 6, 3, 2, 2, noncontig=True),
    # enough channels for every channel block (the last one shifted back to end at C)
    PoolCase("many_channels", 2, 17, 17, 40, 3, 2),
    PoolCase("many_channels_p2s2", 2, 8, 8, 40, 2, 2, ties=True),
    PoolCase("many_channels_ties", 2, 9, 9, 40, 3, 2, ties=True),
    # big enough for the numba backend to thread it (THREADED_WORK)
    PoolCase("large", 4, 48, 48, 64, 3, 2),
    # beyond the course: ceil_mode (windows past the padding), count_include_pad=False,
    # "same" and uneven padding, NCHW, and combinations
    PoolCase("ceil", 2, 8, 9, 3, 3, 2, ceil_mode=True),
    PoolCase("ceil_padded", 2, 8, 7, 3, 3, 2, pad=1, ceil_mode=True),
    PoolCase("exclude_pad", 2, 7, 7, 2, 3, 2, pad=1, count_include_pad=False),
    PoolCase("ceil_exclude_pad", 2, 9, 8, 3, (3, 2), (2, 3), pad=1, ceil_mode=True, count_include_pad=False),
    PoolCase("same", 2, 7, 8, 3, 2, 2, pad="same"),
    PoolCase("same_s1", 2, 6, 5, 3, 3, 1, pad="same", count_include_pad=False),
    PoolCase("uneven_pad", 2, 7, 6, 3, 3, 2, pad=((0, 1), (1, 0))),
    PoolCase("nchw", 2, 7, 8, 3, 3, 2, pad=1, layout="NCHW"),
    PoolCase("nchw_ceil_ties", 2, 8, 8, 4, 2, 2, ceil_mode=True, ties=True, layout="NCHW"),
    PoolCase("many_channels_ceil", 2, 10, 11, 40, 3, 2, pad=1, ceil_mode=True, count_include_pad=False),
]}

#: The benchmark table (NHWC): N, H, W, C_in, f, C_out, stride, pad.
BENCH_CONV_SHAPES: Dict[str, ConvCase] = {c.name: c for c in [
    ConvCase("seed", 10, 4, 4, 3, 2, 8, 2, 2),
    ConvCase("cat_c1", 64, 64, 64, 3, 3, 16, 1, 1),
    ConvCase("cifar", 64, 32, 32, 32, 3, 32, 1, 1),
    ConvCase("res_3x3", 16, 28, 28, 128, 3, 128, 1, 1),
    ConvCase("stride2", 32, 32, 32, 64, 3, 128, 2, 1),
    ConvCase("pointwise", 32, 28, 28, 256, 1, 64, 1, 0),
    ConvCase("stem7x7", 8, 112, 112, 3, 7, 64, 2, 3),
    # beyond the course (issue 22's layers): MobileNet's depthwise 3x3, DeepLab's dilated 3x3,
    # ResNeXt's grouped 3x3, and res_3x3 on channels-first arrays
    ConvCase("depthwise", 8, 56, 56, 64, 3, 64, 1, 1, groups=64),
    ConvCase("dilated", 8, 28, 28, 64, 3, 64, 1, 2, dilation=2),
    ConvCase("grouped", 8, 28, 28, 128, 3, 128, 1, 1, groups=4),
    ConvCase("res_3x3_nchw", 16, 28, 28, 128, 3, 128, 1, 1, layout="NCHW"),
]}

#: Pooling benchmark table: N, H, W, C, f, stride.
BENCH_POOL_SHAPES: Dict[str, PoolCase] = {c.name: c for c in [
    PoolCase("seed", 2, 4, 4, 3, 4, 1),
    PoolCase("p2s2", 64, 64, 64, 16, 2, 2),
    PoolCase("p3s2", 32, 56, 56, 64, 3, 2),
    PoolCase("p8s8", 64, 64, 64, 8, 8, 8),
]}


def conv_case(name: str) -> ConvCase:
    table = {**CONV_CASES, **{f"bench:{k}": v for k, v in BENCH_CONV_SHAPES.items()}}
    return table[name]


def pool_case(name: str) -> PoolCase:
    table = {**POOL_CASES, **{f"bench:{k}": v for k, v in BENCH_POOL_SHAPES.items()}}
    return table[name]
