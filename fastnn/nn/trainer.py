"""Training runs on the cat/non-cat data: what ``fastnn train`` does, callable from Python.

Two models, each behind a small adapter with the same methods (``train_epoch``, ``proba``,
``arrays``, ``from_arrays``):

* ``"dnn"`` (:class:`DnnRun`): the course's 5-layer network [12288, 20, 7, 5, 1] from
  :mod:`fastnn.dnn`, column layout. Its defaults reproduce the course's run exactly:
  ``np.random.seed(1)`` then 1/sqrt(n) initialisation from NumPy's global legacy generator,
  2500 full-batch iterations (``iterations``, or ``epochs``: one iteration per epoch) at
  learning rate 0.0075: the course's printed costs (``Cost after iteration 0: 0.771749``,
  ``Cost after iteration 100: 0.672053``, ...; :data:`fastnn.testing.course.L_LAYER_COSTS`),
  about 98.6% train and 80% test accuracy. Each batch is one
  :func:`fastnn.dnn.gradient_descent_step`, the step :func:`fastnn.dnn.L_layer_model` takes.
* ``"cnn"`` (:class:`CnnRun`): :func:`fastnn.nn.make_cnn`, three [conv3x3 (pad 1) -> ReLU ->
  maxpool 2] blocks of 8, 16 and 32 channels, then Dense to one logit, trained with Adam on
  binary cross-entropy through :func:`fastnn.nn.train_epoch`. Defaults (``DEFAULTS["cnn"]``):
  seed 2 (initialisation and shuffling), 20 epochs, mini-batches of 16, Adam with lr 0.001,
  float64. Measured with a vectorised NumPy conv standing in for the fast backends: 86% test
  accuracy (43/50), 95.7% train, in float64 and in float32 alike. The test accuracy on 50
  images is noisy: over seeds 0-6 the same config ended at 60-94% after 20 epochs (seed 2 was
  the steadiest: 82-86% over its last 6 epochs).

:func:`train` is one run, in named steps: :func:`new_session` or :func:`resume_session` (the
settings, the data, the model), :func:`fit` (the epochs, with checkpoints and Ctrl-C),
:func:`evaluate` and :func:`write_results`. It writes to ``out``: ``params.npz`` (the trained
model), ``checkpoint.npz`` (model, optimiser state and log after the last finished epoch: what
``resume=True`` continues from, also written when Ctrl-C interrupts), ``log.json`` and
``cost.png`` (if matplotlib is installed), every one of them atomically. :func:`predict`
classifies images with a saved run.

Progress (the header, per-epoch lines, the bar, notes) goes to ``stream`` (default stderr)
through :class:`fastnn.nn.progress.Progress`; results come back as a :class:`TrainResult`.
A dnn run of one full-batch update per epoch (its default) numbers its lines as the course
does, ``Cost after iteration i: cost`` for i = 0, print_every, 2 print_every, ... (0-based;
the cost and train accuracy of iteration i are measured before its update); a mini-batch run
(and the cnn) prints ``epoch e/total`` lines (1-based) with the epoch's cost and train accuracy averaged
over its batches, each batch measured before its own update. The log (``log.json``) keeps,
per epoch, the same cost and accuracy (``"epochs"`` holds the 0-based index).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .._files import atomic_write
from .model import ModelMismatchError, read_npz, write_npz
from .progress import Progress
from .training import run_epoch

__all__ = [
    "DEFAULTS", "FIXED_ON_RESUME", "TrainingError", "SettingError", "TrainingInterrupted",
    "DnnRun", "CnnRun", "RUNS", "shard_gradients", "settings_for", "default_out", "save_checkpoint", "load_checkpoint", "plot_costs",
    "Session", "new_session", "resume_session", "fit", "evaluate", "write_results", "TrainResult", "train",
    "load_trained", "Prediction", "predict",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Default settings per model (``None`` batch size: one full batch per epoch).
DEFAULTS = {
    "dnn": {"epochs": 2500, "batch_size": None, "lr": 0.0075, "seed": 1, "checkpoint_every": 100, "print_every": 100},
    "cnn": {"epochs": 20, "batch_size": 16, "lr": 0.001, "seed": 2, "checkpoint_every": 1, "print_every": 1},
}
DTYPES = ("float32", "float64")
#: Settings a checkpoint fixes: resuming refuses a different explicit value.
FIXED_ON_RESUME = ("model", "dtype", "batch_size", "lr", "seed")
DNN_HIDDEN = (20, 7, 5)
CNN_CHANNELS = (8, 16, 32)
CHECKPOINT, PARAMS, LOG, PLOT = "checkpoint.npz", "params.npz", "log.json", "cost.png"


class TrainingError(ValueError):
    """A run that cannot start as asked (nothing to resume or predict with, images that do not fit)."""


class SettingError(TrainingError):
    """A bad value for one setting: ``setting`` is its keyword (``"lr"``), ``problem`` the rest
    of the message, so a command line can name its own option (``--lr``)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting} {problem}")
        self.setting, self.problem = setting, problem


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`, after the checkpoint was saved: ``epoch`` (1-based) was cut
    short, ``finished`` epochs are in ``checkpoint``."""

    def __init__(self, epoch: int, finished: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted in epoch {epoch}: saved the state after epoch {finished} to {checkpoint}")
        self.epoch, self.finished, self.checkpoint = epoch, finished, checkpoint


# ------------------------------------------------------------------------------- runs


class DnnRun:
    """The course's L-layer network trained with :mod:`fastnn.dnn` (column layout: X is (n_x, m))."""

    FORMAT = "fastnn.dnn/1"
    layout = "columns"

    def __init__(self, config: dict, params: Optional[Dict[str, np.ndarray]] = None) -> None:
        from ..dnn import initialize_parameters_deep

        self.config = config
        self.dims = [int(d) for d in config["layer_dims"]]
        self.dtype = np.dtype(config["dtype"])
        if params is None:
            np.random.seed(config["seed"])  # the course: the global legacy generator, then 1/sqrt init
            params = initialize_parameters_deep(self.dims, dtype=self.dtype)
        self.params = params

    @staticmethod
    def new_config(input_shape, settings: dict) -> dict:
        return {**settings, "layer_dims": [int(np.prod(input_shape)), *DNN_HIDDEN, 1]}

    def input_shape_ok(self, shape) -> bool:
        return int(np.prod(shape)) == self.dims[0]

    def train_epoch(self, X, Y, epoch: int, on_batch=None, parallel=None) -> Tuple[float, float]:
        from ..dnn import gradient_descent_step, update_parameters

        m = X.shape[1]

        def step(idx):
            Xb, Yb = (X, Y) if len(idx) == m else (X[:, idx], Y[:, idx])  # the full batch: no copy
            if parallel is None:
                self.params, cost, AL = gradient_descent_step(Xb, Yb, self.params, self.config["lr"])
                return float(cost), float(np.sum((AL > 0.5) == (Yb > 0.5)))
            cost, correct, grads = parallel.gradients(shard_gradients, self.shard_state(), Xb, Yb, axis=self.batch_axis)
            self.params = update_parameters(self.params, grads, self.config["lr"])
            return cost, correct

        return run_epoch(m, step, batch_size=self.config["batch_size"], seed=self.config["seed"], epoch=epoch,
                         on_batch=on_batch)

    # -- data-parallel training: what a worker runs on a shard of a batch (shard_gradients) --
    batch_axis = 1  # the examples are columns

    def shard_state(self) -> dict:
        """What a worker needs to compute gradients: the config and the parameters."""
        return {"config": self.config, "params": dict(self.params)}

    def load_shard_params(self, params: Dict[str, np.ndarray]) -> None:
        self.params = dict(params)

    def gradients(self, X, Y, m: int) -> Tuple[float, float, Dict[str, np.ndarray]]:
        """(cost, correct, grads) of the examples (X, Y), a shard of a batch of ``m``: the cost and
        the gradients ``dW{l}``, ``db{l}`` of :func:`fastnn.dnn.gradient_descent_step` on the
        shard, weighted by its share of the batch (``X.shape[1] / m``), so the shards' add up to
        the batch's."""
        from ..dnn import L_model_backward, L_model_forward, compute_cost

        AL, caches = L_model_forward(X, self.params)
        cost = compute_cost(AL, Y)
        grads = L_model_backward(AL, Y, caches)
        w = X.shape[1] / m
        grads = {k: (g if w == 1 else g * w) for k, g in grads.items() if k.startswith(("dW", "db"))}
        return float(cost) * w, float(np.sum((AL > 0.5) == (Y > 0.5))), grads

    def proba(self, X) -> np.ndarray:
        from ..dnn import L_model_forward

        return L_model_forward(X, self.params)[0].reshape(-1)

    def arrays(self) -> Dict[str, np.ndarray]:
        # gradient_descent_step returns new arrays, so these references are a snapshot already.
        return {"spec": np.array(json.dumps({"format": self.FORMAT, "layer_dims": self.dims, "dtype": self.dtype.name})),
                **{f"param/{k}": v for k, v in self.params.items()}}

    @classmethod
    def from_arrays(cls, config: dict, arrays: Dict[str, np.ndarray], where) -> "DnnRun":
        run = cls(config, params={})
        params = {}
        for l in range(1, len(run.dims)):
            for k, shape in ((f"W{l}", (run.dims[l], run.dims[l - 1])), (f"b{l}", (run.dims[l], 1))):
                a = arrays.get(f"param/{k}")
                if a is None or a.shape != shape or a.dtype != run.dtype:
                    got = "missing" if a is None else f"{a.dtype}{a.shape}"
                    raise ModelMismatchError(f"{where}: parameter {k} is {got}, the network needs {run.dtype.name}{shape}")
                params[k] = a
        run.params = params
        return run


class CnnRun:
    """:func:`fastnn.nn.make_cnn` trained with Adam on binary cross-entropy (NHWC layout)."""

    layout = "nhwc"

    def __init__(self, config: dict) -> None:
        from .losses import BinaryCrossEntropy
        from .optim import Adam
        from .training import make_cnn

        self.config = config
        self.model = make_cnn(config["input_shape"], config["channels"], 1, dtype=config["dtype"], seed=config["seed"])
        self.loss = BinaryCrossEntropy(from_logits=True)
        self.optimizer = Adam(lr=config["lr"])

    @staticmethod
    def new_config(input_shape, settings: dict) -> dict:
        return {**settings, "input_shape": [int(s) for s in input_shape], "channels": list(CNN_CHANNELS)}

    def input_shape_ok(self, shape) -> bool:
        return tuple(shape) == tuple(self.config["input_shape"])

    def train_epoch(self, X, Y, epoch: int, on_batch=None, parallel=None) -> Tuple[float, float]:
        from .training import train_epoch

        gradients = None
        if parallel is not None:
            def gradients(Xb, Yb):
                return parallel.gradients(shard_gradients, self.shard_state(), Xb, Yb, axis=self.batch_axis)

        return train_epoch(self.model, self.loss, self.optimizer, X, Y.reshape(-1, 1), batch_size=self.config["batch_size"],
                           seed=self.config["seed"], epoch=epoch, on_batch=on_batch, gradients=gradients)

    # -- data-parallel training: what a worker runs on a shard of a batch (shard_gradients) --
    batch_axis = 0

    def shard_state(self) -> dict:
        """What a worker needs to compute gradients: the config and the parameters (copies:
        the optimiser updates the model's arrays in place)."""
        return {"config": self.config, "params": {k: v.copy() for k, v in self.model.param_arrays().items()}}

    def load_shard_params(self, params: Dict[str, np.ndarray]) -> None:
        for key, p in self.model.param_arrays().items():
            p[...] = params[key]

    def gradients(self, X, Y, m: int) -> Tuple[float, float, Dict[str, np.ndarray]]:
        """(cost, correct, grads) of the examples (X, Y), a shard of a batch of ``m``
        (:func:`fastnn.nn.batch_gradients`: the mean loss over the whole batch)."""
        from .training import batch_gradients

        cost, correct = batch_gradients(self.model, self.loss, X, Y, m)
        return cost, correct, dict(self.model.grad_arrays())

    def proba(self, X) -> np.ndarray:
        from .training import predict_proba

        return predict_proba(self.model, self.loss, X).reshape(-1)

    def arrays(self) -> Dict[str, np.ndarray]:
        model = {"spec": np.array(json.dumps(self.model.spec())),
                 **{k: v.copy() for k, v in self.model.param_arrays().items()}}
        return {**model, **{f"opt/{k}": v for k, v in self.optimizer.state_dict().items()}}

    @classmethod
    def from_arrays(cls, config: dict, arrays: Dict[str, np.ndarray], where) -> "CnnRun":
        run = cls(config)
        run.model.load_params({k: v for k, v in arrays.items() if not k.startswith("opt/")})
        opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
        if opt:
            run.optimizer.load_state_dict(opt)
        return run


RUNS = {"dnn": DnnRun, "cnn": CnnRun}

_shard_runs = threading.local()  # per worker thread: the run last built for shard_gradients


def shard_gradients(state: dict, X: np.ndarray, Y: np.ndarray, m: int) -> Tuple[float, float, Dict[str, np.ndarray]]:
    """One shard's part of a batch's training step, where the shard is (a Dask worker): the
    model of ``state["config"]`` with ``state["params"]`` (from the run's ``shard_state()``),
    forward and backward on the examples (X, Y) of a batch of ``m``. Returns (cost, correct,
    grads), each the shard's share: added over the shards (in a fixed order, by the driver)
    they are the batch's mean cost, its correct count and its gradients, which the run's own
    step then applies. The model is built once per thread and config."""
    config = state["config"]
    key = json.dumps(config, sort_keys=True)
    if getattr(_shard_runs, "key", None) != key:
        cls = RUNS[config["model"]]
        _shard_runs.run = cls(config, params={}) if cls is DnnRun else cls(config)
        _shard_runs.key = key
    run = _shard_runs.run
    run.load_shard_params(state["params"])
    return run.gradients(X, Y, m)


# --------------------------------------------------------------------------- settings


def _int_setting(name: str, value, minimum: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise SettingError(name, f"must be {what}, got {value}")


def _iterations(iterations, epochs, batch_size) -> int:
    """``iterations`` as the number of epochs: allowed where each epoch is one full-batch update."""
    _int_setting("iterations", iterations, 0, ">= 0")
    if batch_size is not None:
        raise SettingError("iterations", f"counts full-batch iterations, one update per pass over the data "
                                         f"(the dnn's training); this run trains in mini-batches of {batch_size}: "
                                         f"give epochs instead")
    if epochs is not None and epochs != iterations:
        raise SettingError("iterations", f"and epochs are the same count for full-batch training; got "
                                         f"iterations={iterations} and epochs={epochs}: give one of them")
    return int(iterations)


def settings_for(model: Optional[str] = None, **given) -> dict:
    """All settings of a run: ``model`` (default ``"dnn"``), ``dtype`` (default ``"float64"``)
    and ``epochs``, ``batch_size``, ``lr``, ``seed``, ``checkpoint_every``, ``print_every``,
    each ``given`` value or, where it is None or absent, ``DEFAULTS[model]``'s. Checked: a bad
    value raises :class:`SettingError` naming the setting, expected and actual value.

    ``iterations`` (the course's ``num_iterations``) is another name for ``epochs`` where each
    epoch is one full-batch update (``batch_size`` None: the dnn's default); with mini-batches
    it is refused."""
    model = "dnn" if model is None else model
    if model not in DEFAULTS:
        raise SettingError("model", f"must be one of {sorted(DEFAULTS)}, got {model!r}")
    known = {"dtype", "iterations", *DEFAULTS[model]}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; known: {sorted({'model', *known})}")
    s = {"model": model, "dtype": given.get("dtype") or "float64"}
    for name, default in DEFAULTS[model].items():
        s[name] = given[name] if given.get(name) is not None else default
    if s["dtype"] not in DTYPES:
        raise SettingError("dtype", f"must be one of {list(DTYPES)}, got {s['dtype']!r}")
    _int_setting("epochs", s["epochs"], 0, ">= 0")
    if s["batch_size"] is not None:
        _int_setting("batch_size", s["batch_size"], 1, "positive")
    if given.get("iterations") is not None:
        s["epochs"] = _iterations(given["iterations"], given.get("epochs"), s["batch_size"])
    _int_setting("seed", s["seed"], 0, ">= 0")
    lr = s["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise TypeError(f"lr must be a number, got {type(lr).__name__} {lr!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise SettingError("lr", f"must be a positive number, got {lr}")
    for name in ("checkpoint_every", "print_every"):
        _int_setting(name, s[name], 1, ">= 1")
    return s


# ------------------------------------------------------------------------------ files


def save_checkpoint(path: PathLike, arrays: Dict[str, np.ndarray], meta: dict) -> None:
    """A run's arrays (:meth:`DnnRun.arrays` / :meth:`CnnRun.arrays`) and its ``meta`` (config,
    classes, log, ...; stored as JSON under ``"meta"``) as one ``.npz``, written atomically: an
    interrupted write leaves the previous checkpoint."""
    write_npz(path, {**arrays, "meta": np.array(json.dumps(meta))})


def load_checkpoint(path: PathLike):
    """``(run, meta)`` from a file :func:`save_checkpoint` wrote (``checkpoint.npz`` or ``params.npz``)."""
    arrays = read_npz(path)
    if "meta" not in arrays:
        raise ModelMismatchError(f"{path} has no 'meta' entry: not written by `fastnn train`")
    meta = json.loads(str(arrays.pop("meta")))
    model = meta.get("config", {}).get("model")
    if model not in RUNS:
        raise ModelMismatchError(f"{path}: unknown model {model!r} in its meta; known: {sorted(RUNS)}")
    return RUNS[model].from_arrays(meta["config"], arrays, path), meta


def plot_costs(costs: List[float], path: PathLike, title: str, xlabel: str = "epoch") -> str:
    """The cost per epoch as a PNG at ``path`` (atomically); returns a line saying what happened
    (nothing is written when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no cost plot (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(costs)), costs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("cost")
    ax.set_title(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    return f"wrote {path}"


def default_out(model: Optional[str]) -> Path:
    """Where a run writes without an explicit ``out``: ``runs/<model>``."""
    return Path("runs") / (model or "dnn")


# ---------------------------------------------------------------------------- sessions


@dataclass
class Session:
    """One run being trained: the model adapter, the settings, the data, the log so far."""

    run: Union[DnnRun, CnnRun]
    settings: dict  # settings_for(...): epochs (the total), checkpoint_every, print_every, ...
    out: Path
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: List[str]
    log: dict  # per finished epoch: "epochs", "cost", "train_accuracy", "seconds"
    backend: str = ""
    start: int = 0  # epochs finished before this call (a resumed run's checkpoint)
    #: Where the gradients are computed when not here: a :class:`fastnn.dask.DataParallel`
    #: (``train(dask=...)``), whose ``gradients(fn, state, X, Y, axis=)`` each step calls.
    parallel: Optional[object] = None

    @property
    def config(self) -> dict:
        return self.run.config

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    def meta(self) -> dict:
        meta = {"config": self.config, "classes": self.classes, "log": self.log, "backend": self.backend}
        if self.parallel is not None:
            meta["parallel"] = self.parallel.describe()
        return meta

    @property
    def per_iteration(self) -> bool:
        """The dnn with one full-batch update per epoch (its default): lines are numbered by
        iteration, as the course does. (The cnn always counts epochs.)"""
        bs = self.config["batch_size"]
        return self.config["model"] == "dnn" and (bs is None or bs >= self.train_y.size)

    def timed_seconds(self) -> List[float]:
        """Seconds per epoch of the epochs trained in this call, or of all of them if it trained none."""
        return self.log["seconds"][self.start:] or self.log["seconds"]


def _example_shape(x: np.ndarray, layout: str):
    return tuple(x.shape[1:]) if layout == "nhwc" else (x.shape[0],)


def _load_data(data, layout: str, dtype):
    from ..data import load_cat_data

    train_x, train_y, test_x, test_y, classes = load_cat_data(data, layout=layout, dtype=dtype)
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(classes).reshape(-1)]
    return train_x, train_y.astype(dtype), test_x, test_y.astype(dtype), names


def _backend_name(model: str) -> str:
    from .._dispatch import resolve_name

    return resolve_name("conv_forward" if model == "cnn" else "relu")  # the kernel the model leans on


def new_session(out: PathLike, data=None, **settings) -> Session:
    """A fresh run: :func:`settings_for` ``settings``, the data (``data``: the directory, see
    :func:`fastnn.data.find_data_dir`), the model initialised from the seed."""
    s = settings_for(**settings)
    cls = RUNS[s["model"]]
    train_x, train_y, test_x, test_y, classes = _load_data(data, cls.layout, np.dtype(s["dtype"]))
    config = cls.new_config(_example_shape(train_x, cls.layout), {k: s[k] for k in FIXED_ON_RESUME})
    return Session(cls(config), s, Path(out), train_x, train_y, test_x, test_y, classes,
                   {"epochs": [], "cost": [], "train_accuracy": [], "seconds": []}, _backend_name(s["model"]))


def resume_session(out: PathLike, data=None, **given) -> Session:
    """The run saved in ``out``'s checkpoint, to be continued up to ``epochs`` in total. The
    settings it fixes (``FIXED_ON_RESUME``) come from the checkpoint; an explicit different
    value raises :class:`SettingError`. The others default per the checkpoint's model."""
    out = Path(out)
    ckpt = out / CHECKPOINT
    if not ckpt.is_file():
        raise SettingError("resume", f"found no checkpoint at {ckpt}: train without it first, or pass that run's "
                                     f"output directory")
    run, meta = load_checkpoint(ckpt)
    cfg = run.config
    for k in FIXED_ON_RESUME:
        if given.get(k) is not None and given[k] != cfg[k]:
            raise SettingError(k, f"cannot change on resume: {ckpt} was trained with {k}={cfg[k]!r}, not "
                                  f"{given[k]!r}; leave it out or use another output directory")
    iterations = given.pop("iterations", None)  # checked against the checkpoint's batch size
    s = {**settings_for(**{**given, "model": cfg["model"]}), **{k: cfg[k] for k in FIXED_ON_RESUME}}
    if iterations is not None:
        s["epochs"] = _iterations(iterations, given.get("epochs"), s["batch_size"])
    train_x, train_y, test_x, test_y, classes = _load_data(data, run.layout, np.dtype(cfg["dtype"]))
    shape = _example_shape(train_x, run.layout)
    if not run.input_shape_ok(shape):
        raise TrainingError(f"resume: the data's images {shape} do not fit the model in {ckpt}")
    log = meta["log"]
    return Session(run, s, out, train_x, train_y, test_x, test_y, classes, log, _backend_name(cfg["model"]),
                   start=len(log["cost"]))


# ------------------------------------------------------------------------------ steps


def _header(session: Session) -> str:
    cfg = session.config
    unit = "iterations" if session.per_iteration else "epochs"
    where = f", data-parallel on {session.parallel.describe()}" if session.parallel is not None else ""
    return (f"fastnn train: {cfg['model']} on {session.train_y.size} images, {cfg['dtype']}, backend {session.backend}{where}, "
            f"{unit} {session.start}..{session.settings['epochs']}, batch {cfg['batch_size'] or 'full'}, "
            f"lr {cfg['lr']}, seed {cfg['seed']} -> {session.out}")


def _iteration_line(i: int, cost: float, acc: float, secs: float) -> str:
    """The course's ``Cost after iteration %i: %f`` (0-based ``i``; the cost before its update), then
    the train accuracy measured with the same parameters."""
    return (f"Cost after iteration {i}: {cost:f}  (train acc {100 * acc:.2f}% before this update, "
            f"{secs:.3f} s/iteration)")


def _epoch_line(epoch: int, total: int, cost: float, acc: float, secs: float) -> str:
    return (f"epoch {epoch + 1:>4}/{total}  cost {cost:.6f}  train acc {100 * acc:6.2f}% "
            f"(each batch before its update)  {secs:.3f} s/epoch")


def _prints(session: Session, epoch: int) -> bool:
    """Whether ``epoch`` (0-based) gets a log line: by iteration, every ``print_every`` from 0 (as the
    course prints) and where a resumed run starts; by epoch, every ``print_every``-th, the first and
    the last."""
    every, start, total = session.settings["print_every"], session.start, session.settings["epochs"]
    if session.per_iteration:
        return epoch % every == 0 or epoch == start
    return (epoch + 1) % every == 0 or epoch == start or epoch + 1 == total


def _log_line(session: Session, epoch: int, cost: float, acc: float, secs: float) -> str:
    if session.per_iteration:
        return _iteration_line(epoch, cost, acc, secs)
    return _epoch_line(epoch, session.settings["epochs"], cost, acc, secs)


def _train_one_epoch(session: Session, epoch: int, progress: Progress,
                     on_batch: Optional[Callable[[int, int, int], None]]) -> Tuple[float, float, float]:
    """One epoch; returns (cost, train accuracy, seconds) and appends them to the log."""
    def batch_done(done, n, cost):
        progress.update(epoch, done, n, cost)
        if on_batch is not None:
            on_batch(epoch, done, n)

    t0 = time.perf_counter()
    cost, acc = session.run.train_epoch(session.train_x, session.train_y, epoch, batch_done, parallel=session.parallel)
    secs = time.perf_counter() - t0
    for k, v in (("epochs", epoch), ("cost", cost), ("train_accuracy", acc), ("seconds", secs)):
        session.log[k].append(v)
    return cost, acc, secs


def fit(session: Session, progress: Progress,
        on_batch: Optional[Callable[[int, int, int], None]] = None) -> Dict[str, np.ndarray]:
    """Train from ``session.start`` up to ``settings["epochs"]`` epochs. Log lines as
    :func:`_prints` says (by iteration for full-batch runs, as the course prints them),
    ``checkpoint.npz`` every ``checkpoint_every`` and at the end. Returns the arrays after
    the last epoch.

    Ctrl-C saves the state after the last *finished* epoch (never half an epoch's update) and
    raises :class:`TrainingInterrupted`. ``on_batch(epoch, batch, n_batches)`` is a hook for tests."""
    s, start = session.settings, session.start
    total = s["epochs"]
    snapshot = session.run.arrays()  # the state after the last finished epoch (what Ctrl-C saves)
    epoch = start
    try:
        with progress:  # the bar goes away however the loop ends
            for epoch in range(start, total):
                cost, acc, secs = _train_one_epoch(session, epoch, progress, on_batch)
                snapshot = session.run.arrays()
                if _prints(session, epoch):
                    progress.line(_log_line(session, epoch, cost, acc, secs))
                if (epoch + 1) % s["checkpoint_every"] == 0:
                    save_checkpoint(session.checkpoint, snapshot, session.meta())
    except KeyboardInterrupt:
        save_checkpoint(session.checkpoint, snapshot, session.meta())
        raise TrainingInterrupted(epoch + 1, len(session.log["cost"]), session.checkpoint) from None
    save_checkpoint(session.checkpoint, snapshot, session.meta())
    return snapshot


def _accuracy(run, X, Y) -> float:
    return float(np.mean((run.proba(X) > 0.5) == (Y.reshape(-1) > 0.5)))


def evaluate(session: Session) -> dict:
    """The summary log.json stores: final train and test accuracy, time per epoch (over the
    epochs of this call, or all of them if it trained none), first and final cost."""
    log = session.log
    secs = session.timed_seconds()
    return {
        "train_accuracy": _accuracy(session.run, session.train_x, session.train_y),
        "test_accuracy": _accuracy(session.run, session.test_x, session.test_y),
        "seconds_per_epoch_median": float(np.median(secs)) if secs else None,
        "seconds_per_epoch_mean": float(np.mean(secs)) if secs else None,
        "first_cost": log["cost"][0] if log["cost"] else None,
        "final_cost": log["cost"][-1] if log["cost"] else None,
    }


def write_results(session: Session, snapshot: Dict[str, np.ndarray], summary: dict, stream=None) -> dict:
    """``params.npz`` (the model with the meta and summary), ``log.json`` and ``cost.png``;
    returns what log.json holds."""
    stream = stream if stream is not None else sys.stderr
    cfg, out = session.config, session.out
    full_meta = {**session.meta(), "summary": summary}
    save_checkpoint(out / PARAMS, snapshot, full_meta)
    atomic_write(out / LOG, json.dumps(full_meta, indent=1).encode())
    print(plot_costs(session.log["cost"], out / PLOT, f"fastnn {cfg['model']} ({cfg['dtype']}, lr {cfg['lr']})",
                     "iteration" if session.per_iteration else "epoch"), file=stream)
    print(f"wrote {out / PARAMS}, {session.checkpoint}, {out / LOG}", file=stream)
    return full_meta


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did: ``meta`` is what log.json holds (config, classes, log, backend, summary)."""

    out: Path
    meta: dict
    n_train: int
    n_test: int
    timed_epochs: int  # how many epochs the summary's time per epoch is over
    per_iteration: bool = False  # each epoch was one full-batch iteration (the course's numbering)

    @property
    def summary(self) -> dict:
        return self.meta["summary"]


def train(out: Optional[PathLike] = None, *, data=None, model: Optional[str] = None, dtype: Optional[str] = None,
          epochs: Optional[int] = None, iterations: Optional[int] = None, batch_size: Optional[int] = None,
          lr: Optional[float] = None,
          seed: Optional[int] = None, checkpoint_every: Optional[int] = None, print_every: Optional[int] = None,
          resume: bool = False, backend: Optional[str] = None, quiet: bool = False, stream=None,
          on_batch: Optional[Callable[[int, int, int], None]] = None, dask: Optional[str] = None,
          parallel=None) -> TrainResult:
    """One run of ``fastnn train`` (see the module docstring). None means the default (on
    resume: the checkpoint's value). ``iterations`` is ``epochs`` for full-batch training
    (:func:`settings_for`). ``out`` defaults to ``runs/<model>``; ``backend`` to the
    one in force; ``quiet`` drops the bar and the per-epoch lines (the header and notes stay).

    ``dask``: train data-parallel on a Dask cluster, ``"local:N"`` (N worker processes here)
    or a scheduler's address (``"tcp://host:port"``); ``parallel``: an open
    :class:`fastnn.dask.DataParallel` instead (the caller's cluster). Each batch is cut into
    shards whose gradients the workers compute; the same epochs, checkpoints and log.

    Raises :class:`SettingError`/:class:`TrainingError` for a bad request,
    :class:`fastnn.data.DataError` for missing data, :class:`TrainingInterrupted` on Ctrl-C."""
    from .. import get_backend, use_backend

    stream = stream if stream is not None else sys.stderr
    out = Path(out) if out is not None else default_out(model)
    settings = {"model": model, "dtype": dtype, "epochs": epochs, "iterations": iterations, "batch_size": batch_size,
                "lr": lr, "seed": seed, "checkpoint_every": checkpoint_every, "print_every": print_every}
    if dask is not None and parallel is not None:
        raise SettingError("dask", "and parallel= both say where to train: give one of them")
    dp = _dask_parallel(dask) if dask is not None else None  # a bad address fails before the data loads
    with contextlib.ExitStack() as stack:
        if backend is not None:
            stack.enter_context(use_backend(backend))
        if resume:
            session = resume_session(out, data, **settings)
            print(f"resuming from {session.checkpoint} after epoch {session.start}", file=stream)
        else:
            session = new_session(out, data, **settings)
        if dp is not None:
            try:
                parallel = stack.enter_context(dp.connect(dask, backend=get_backend()))
            except (OSError, TimeoutError) as exc:
                raise TrainingError(f"dask: cannot start or reach the cluster {dask!r}: {exc}") from None
        session.parallel = parallel
        out.mkdir(parents=True, exist_ok=True)
        print(_header(session), file=stream)
        progress = Progress(max(session.settings["epochs"], 1), stream=stream, enabled=not quiet,
                            per_iteration=session.per_iteration)
        snapshot = fit(session, progress, on_batch)
        summary = evaluate(session)
    meta = write_results(session, snapshot, summary, stream)
    return TrainResult(out, meta, session.train_y.size, session.test_y.size, len(session.timed_seconds()),
                       session.per_iteration)


def _dask_parallel(address):
    """:mod:`fastnn.dask.parallel`, once ``address`` is checked (``train(dask=address)``); its
    problems (no Dask, a bad address) as setting errors."""
    if not isinstance(address, str):
        raise SettingError("dask", f"must be local:N or a scheduler address such as tcp://host:port, got {address!r}")
    try:
        from ..dask import parallel as dp
    except ImportError as exc:
        raise SettingError("dask", f"needs Dask: pip install 'fastnn[dask]' ({exc})") from None
    try:
        dp.parse_address(address)
    except ValueError as exc:
        raise SettingError("dask", str(exc)) from None
    return dp


# ----------------------------------------------------------------------------- predict


def load_trained(out: PathLike):
    """``(run, meta, path)`` of the model saved in ``out``: ``params.npz``, else ``checkpoint.npz``."""
    out = Path(out)
    for name in (PARAMS, CHECKPOINT):
        if (out / name).is_file():
            run, meta = load_checkpoint(out / name)
            return run, meta, out / name
    raise TrainingError(f"no trained model in {out} ({PARAMS} or {CHECKPOINT}): train first, or pass the run's "
                        f"output directory")


@dataclass(frozen=True)
class Prediction:
    """Per image: ``names``, ``proba`` (p(class 1)), ``labels`` (class names); ``accuracy`` when
    the file had labels (else None), over ``proba.size`` images."""

    names: List[str]
    proba: np.ndarray
    labels: List[str]
    accuracy: Optional[float]


def predict(images: PathLike, out: Optional[PathLike] = None, *, model: Optional[str] = None,
            backend: Optional[str] = None) -> Prediction:
    """Classify ``images`` (see :func:`fastnn.data.read_images`) with the run saved in ``out``
    (default ``runs/<model>``). ``model``, if given, must be the saved run's; ``backend``
    defaults to the one in force."""
    from .. import use_backend
    from ..data import read_images

    run, meta, path = load_trained(out if out is not None else default_out(model))
    if model is not None and model != run.config["model"]:
        raise SettingError("model", f"does not match the saved run: {path} holds a {run.config['model']} model, "
                                    f"not {model}")
    x, y, names = read_images(images)
    x = x.astype(np.dtype(run.config["dtype"]))
    shape = tuple(x.shape[1:])
    if not run.input_shape_ok(shape if run.layout == "nhwc" else (int(np.prod(shape)),)):
        trained_on = run.config.get("input_shape") or run.config["layer_dims"][:1]
        raise TrainingError(f"the images are {shape}, the model in {path} was trained on {trained_on}; "
                            f"resize them first")
    X = x if run.layout == "nhwc" else x.reshape(x.shape[0], -1).T
    with use_backend(backend) if backend is not None else contextlib.nullcontext():
        p = run.proba(X)
    classes = meta.get("classes") or ["0", "1"]
    labels = []
    for pi in p:
        label = int(pi > 0.5)
        labels.append(classes[label] if label < len(classes) else str(label))
    acc = float(np.mean((p > 0.5) == (y > 0.5))) if y is not None else None
    return Prediction(names, p, labels, acc)
