"""The :class:`Sequential` container and its one-file ``.npz`` format.

A saved model is one ``.npz`` holding

* ``spec``: a JSON string ``{"format", "dtype", "input_shape", "layers": [layer.spec(), ...]}``;
* ``param/<layer index>/<name>``: every parameter array;
* anything else the caller adds under its own prefix (a checkpoint adds the optimiser's
  state and the training log, see :mod:`fastnn.nn.trainer`).

:func:`write_npz` is the one way fastnn writes an ``.npz`` (models, checkpoints): through
:func:`fastnn._files.atomic_write`, so an interrupted write leaves the old file.

:meth:`Sequential.load` rebuilds the model from the spec. :meth:`Sequential.load_params`
loads into an existing model and raises :class:`ModelMismatchError` naming the first
difference (layer, setting, shape or dtype); it never reshapes or casts silently.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._files import atomic_write
from .layers import LAYER_TYPES, Layer

__all__ = ["Sequential", "ModelMismatchError", "read_npz", "write_npz", "FORMAT"]

FORMAT = "fastnn.nn.Sequential/1"
PathLike = Union[str, os.PathLike]


class ModelMismatchError(ValueError):
    """A saved file does not describe the model it is being loaded into."""


def read_npz(path: PathLike) -> Dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (no pickles), with a clear error for a missing or bad file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"no saved model at {path}") from None
    except (OSError, ValueError) as exc:
        raise ModelMismatchError(f"{path} is not a readable .npz model file ({exc})") from None


def write_npz(path: PathLike, arrays: Dict[str, np.ndarray]) -> None:
    """``arrays`` as one uncompressed ``.npz`` at exactly ``path`` (no ``.npz`` appended), written
    atomically: a reader sees the old file or the whole new one."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


class Sequential:
    """Layers applied in order. ``dtype`` (float32 or float64) is the dtype of every parameter,
    activation and gradient; inputs of another dtype are cast on entry to :meth:`forward`.
    ``seed`` seeds the parameter initialisation (NumPy ``default_rng``).
    ``input_shape`` (one example, e.g. (64, 64, 3)) is checked against the layers if given."""

    def __init__(self, layers: Iterable[Layer], *, input_shape: Optional[Sequence[int]] = None,
                 dtype=np.float64, seed: int = 0) -> None:
        self.layers: List[Layer] = list(layers)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        if self.input_shape is not None:
            self.output_shape()  # checks that the layers fit together
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.build(rng, self.dtype)

    # -- description ---------------------------------------------------------------
    def output_shape(self, input_shape: Optional[Sequence[int]] = None) -> Tuple[int, ...]:
        shape = tuple(input_shape if input_shape is not None else self.input_shape)
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
            except ValueError as exc:
                raise ValueError(f"layer {i}: {exc}") from None
            if min(shape) < 1:
                raise ValueError(f"layer {i} ({layer!r}) leaves an empty output {shape}")
        return shape

    def spec(self) -> dict:
        return {
            "format": FORMAT,
            "dtype": self.dtype.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [layer.spec() for layer in self.layers],
        }

    @classmethod
    def from_spec(cls, spec: dict, seed: int = 0) -> "Sequential":
        layers = []
        for i, s in enumerate(spec["layers"]):
            s = dict(s)
            kind = s.pop("type")
            if kind not in LAYER_TYPES:
                raise ModelMismatchError(f"layer {i}: unknown layer type {kind!r}; known: {sorted(LAYER_TYPES)}")
            layers.append(LAYER_TYPES[kind](**s))
        return cls(layers, input_shape=spec.get("input_shape"), dtype=spec["dtype"], seed=seed)

    def n_params(self) -> int:
        return sum(p.size for layer in self.layers for p in layer.params.values())

    def summary(self) -> str:
        lines = [f"Sequential ({self.dtype.name}, {self.n_params()} parameters)"]
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            if shape is not None:
                shape = layer.output_shape(shape)
            n = sum(p.size for p in layer.params.values())
            lines.append(f"  {i:>2} {layer!r:<70} -> {shape if shape is not None else '?'}  {n} params")
        return "\n".join(lines)

    # -- passes ------------------------------------------------------------------------
    def forward(self, x, train: bool = True) -> np.ndarray:
        """The network's output for a batch; ``train=True`` keeps the caches for :meth:`backward`."""
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)  # the one explicit cast: inputs enter in the model's dtype
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    __call__ = forward

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> Optional[np.ndarray]:
        """Back-propagate ``dout`` (gradient of the loss w.r.t. the output); fills every layer's
        grads and returns the gradient of the input. ``input_grad=False`` (training: the
        input needs no gradient) lets a first layer that can skip it do so (a
        convolution's dA_prev, as costly as its forward); it then returns ``None``."""
        if dout.dtype != self.dtype:
            raise TypeError(f"dout has dtype {dout.dtype}, the model computes in {self.dtype}")
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            if k == 0 and not input_grad and layer.input_grad_optional:
                return layer.backward(dout, input_grad=False)
            dout = layer.backward(dout)
        return dout

    # -- parameters -----------------------------------------------------------------
    def param_arrays(self) -> Dict[str, np.ndarray]:
        """``{"param/<i>/<name>": array}`` (the arrays themselves, not copies)."""
        return {f"param/{i}/{n}": p for i, layer in enumerate(self.layers) for n, p in layer.params.items()}

    def grad_arrays(self) -> Dict[str, np.ndarray]:
        """``{"param/<i>/<name>": gradient}`` after :meth:`backward` (the keys of :meth:`param_arrays`)."""
        return {f"param/{i}/{n}": layer.grads[n] for i, layer in enumerate(self.layers) for n in layer.params}

    def load_grads(self, grads: Dict[str, np.ndarray]) -> None:
        """Set every layer's gradients from ``grads`` (keys and shapes of :meth:`param_arrays`):
        gradients computed elsewhere (the shards of a batch on a Dask cluster), for the optimiser."""
        params = self.param_arrays()
        if set(grads) != set(params):
            raise ValueError(f"grads must have the keys of param_arrays(): missing {sorted(set(params) - set(grads))}, "
                             f"unexpected {sorted(set(grads) - set(params))}")
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"grads[{key!r}] is {g.dtype}{g.shape}, the parameter is {p.dtype}{p.shape}")
        for i, layer in enumerate(self.layers):
            layer.grads = {n: grads[f"param/{i}/{n}"] for n in layer.params}

    def save(self, path: PathLike, extra: Optional[Dict[str, np.ndarray]] = None) -> None:
        """Write spec + parameters (+ ``extra`` arrays) to one ``.npz`` (atomically, see :func:`write_npz`)."""
        write_npz(path, {"spec": np.array(json.dumps(self.spec())), **self.param_arrays(), **(extra or {})})

    def load_params(self, source: Union[PathLike, Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Copy the saved parameters into this model after checking the file describes it.
        Returns the file's other arrays (e.g. a checkpoint's optimiser state)."""
        arrays = dict(read_npz(source) if not isinstance(source, dict) else source)
        where = source if not isinstance(source, dict) else "the saved arrays"
        if "spec" not in arrays:
            raise ModelMismatchError(f"{where} has no 'spec' entry: not a fastnn.nn model file")
        saved = json.loads(str(arrays.pop("spec")))
        self._check_spec(saved, where)
        mine = self.param_arrays()
        for key, p in mine.items():
            if key not in arrays:
                raise ModelMismatchError(f"{where} lacks parameter {key!r}")
            a = arrays[key]
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ModelMismatchError(
                    f"{where}: parameter {key!r} is {a.dtype}{a.shape} in the file, {p.dtype}{p.shape} in the model"
                )
        for key, p in mine.items():
            p[...] = arrays.pop(key)
        stray = [k for k in arrays if k.startswith("param/")]
        if stray:
            raise ModelMismatchError(f"{where} has parameters the model lacks: {stray}")
        return arrays

    def _check_spec(self, saved: dict, where) -> None:
        mine = self.spec()
        if saved.get("format") != FORMAT:
            raise ModelMismatchError(f"{where} has format {saved.get('format')!r}, expected {FORMAT!r}")
        for key in ("dtype", "input_shape"):
            if saved.get(key) != mine[key]:
                raise ModelMismatchError(f"{where}: {key} is {saved.get(key)!r} in the file, {mine[key]!r} in the model")
        s_layers, m_layers = saved["layers"], mine["layers"]
        if len(s_layers) != len(m_layers):
            raise ModelMismatchError(f"{where} has {len(s_layers)} layers, the model has {len(m_layers)}")
        for i, (s, m) in enumerate(zip(s_layers, m_layers)):
            if s.get("type") != m["type"]:
                raise ModelMismatchError(f"{where}: layer {i} is {s.get('type')} in the file, {m['type']} in the model")
            for k in sorted(set(s) | set(m)):
                if s.get(k) != m.get(k):
                    raise ModelMismatchError(
                        f"{where}: layer {i} ({m['type']}) has {k}={s.get(k)!r} in the file, {k}={m.get(k)!r} in the model"
                    )

    @classmethod
    def load(cls, path: PathLike) -> "Sequential":
        """A model rebuilt from a saved file's spec, with its parameters."""
        arrays = read_npz(path)
        if "spec" not in arrays:
            raise ModelMismatchError(f"{path} has no 'spec' entry: not a fastnn.nn model file")
        spec = json.loads(str(arrays["spec"]))
        if spec.get("format") != FORMAT:
            raise ModelMismatchError(f"{path} has format {spec.get('format')!r}, expected {FORMAT!r}")
        model = cls.from_spec(spec)
        model.load_params(arrays)
        return model
