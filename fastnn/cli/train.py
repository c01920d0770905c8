"""``fastnn train``: the course's dense network or a small ConvNet on the cat/non-cat data.

``--model dnn`` (default) is the course's 5-layer network [12288, 20, 7, 5, 1] built from
:mod:`fastnn.dnn`; its defaults reproduce the course's run exactly: ``np.random.seed(1)``
then 1/sqrt(n) initialisation from NumPy's global legacy generator, 2500 full-batch
iterations ("epochs") at learning rate 0.0075: cost 0.771749 at iteration 0, about 98.6%
train and 80% test accuracy.

``--model cnn`` is :func:`fastnn.nn.make_cnn`: three [conv3x3 (pad 1) -> ReLU -> maxpool 2]
blocks of 8, 16 and 32 channels, then Dense to one logit, trained with Adam on
binary cross-entropy. Defaults (``DEFAULTS["cnn"]``): seed 2 (initialisation and shuffling),
20 epochs, mini-batches of 16, Adam with lr 0.001, float64. Measured with a vectorised NumPy
conv standing in for the fast backends: 86% test accuracy (43/50), 95.7% train, in float64
and in float32 alike. The test accuracy on 50 images is noisy: over seeds 0-6 the same config
ended at 60-94% after 20 epochs (seed 2 was the steadiest: 82-86% over its last 6 epochs).

Everything runs on the dispatched kernels, so ``--backend`` switches the whole network.
Written to ``--out``: ``params.npz`` (the trained model), ``checkpoint.npz`` (model,
optimiser state and log after the last finished epoch: what ``--resume`` continues from,
also written when Ctrl-C interrupts), ``log.json`` and ``cost.png`` (if matplotlib is
installed). ``--predict FILE`` classifies an image or an .h5 with the model saved in ``--out``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

HELP = "train the course's dense network or a small ConvNet on the cat/non-cat data"

#: Default settings per model (``None`` batch size: one full batch per epoch).
DEFAULTS = {
    "dnn": {"epochs": 2500, "batch_size": None, "lr": 0.0075, "seed": 1, "checkpoint_every": 100, "print_every": 100},
    "cnn": {"epochs": 20, "batch_size": 16, "lr": 0.001, "seed": 2, "checkpoint_every": 1, "print_every": 1},
}
#: Settings a checkpoint fixes: --resume refuses a different explicit value.
FIXED_ON_RESUME = ("model", "dtype", "batch_size", "lr", "seed")
DNN_HIDDEN = (20, 7, 5)
CNN_CHANNELS = (8, 16, 32)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_arguments(parser) -> None:
    a = parser.add_argument
    a("--data", metavar="DIR", help="directory with train_catvnoncat.h5 and test_catvnoncat.h5 "
      "(default: $FASTNN_DATA, then ../shared/datasets, then ./datasets)")
    a("--model", choices=sorted(DEFAULTS), default=None, help="dnn (the course's 5-layer network, default) or cnn")
    a("--backend", default=None, help="kernel backend (default: $FASTNN_BACKEND or auto; see `fastnn info`)")
    a("--dtype", choices=("float32", "float64"), default=None, help="float64 (default) or float32, end to end")
    a("--epochs", type=int, default=None, help="total epochs (dnn: full-batch iterations, default 2500; cnn: %d)"
      % DEFAULTS["cnn"]["epochs"])
    a("--batch-size", type=int, default=None, help="mini-batch size (dnn default: the full batch; cnn: %d)"
      % DEFAULTS["cnn"]["batch_size"])
    a("--lr", type=float, default=None, help="learning rate (dnn 0.0075, cnn Adam %g)" % DEFAULTS["cnn"]["lr"])
    a("--seed", type=int, default=None, help="initialisation and shuffling seed (dnn 1, cnn %d)" % DEFAULTS["cnn"]["seed"])
    a("--out", metavar="DIR", default=None, help="output directory (default runs/<model>)")
    a("--resume", action="store_true", help="continue from --out's checkpoint.npz up to --epochs in total")
    a("--checkpoint-every", type=int, default=None, metavar="N", help="write checkpoint.npz every N epochs "
      "(dnn 100, cnn 1; also at the end and on Ctrl-C)")
    a("--print-every", type=int, default=None, metavar="N", help="one log line every N epochs (dnn 100, cnn 1)")
    a("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    a("--predict", metavar="IMAGE_OR_H5", help="classify an image (64x64 RGB) or an .h5 of images "
      "(course keys *_set_x, optional *_set_y) with the model saved in --out, instead of training")


class UsageError(Exception):
    """A wrong option combination or a missing file: printed without a traceback."""


# ------------------------------------------------------------------------------- runs


class DnnRun:
    """The course's L-layer network trained with :mod:`fastnn.dnn` (column layout)."""

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
    def new_config(input_shape, args_cfg: dict) -> dict:
        return {**args_cfg, "layer_dims": [int(np.prod(input_shape)), *DNN_HIDDEN, 1]}

    def input_shape_ok(self, shape) -> bool:
        return int(np.prod(shape)) == self.dims[0]

    def train_epoch(self, X, Y, epoch: int, on_batch=None):
        from ..dnn import gradient_descent_step
        from ..nn.training import run_epoch

        m = X.shape[1]

        def step(idx):
            Xb, Yb = (X, Y) if len(idx) == m else (X[:, idx], Y[:, idx])  # the full batch: no copy
            self.params, cost, AL = gradient_descent_step(Xb, Yb, self.params, self.config["lr"])
            return float(cost), float(np.sum((AL > 0.5) == (Yb > 0.5)))

        return run_epoch(m, step, batch_size=self.config["batch_size"], seed=self.config["seed"], epoch=epoch,
                         on_batch=on_batch)

    def proba(self, X) -> np.ndarray:
        from ..dnn import L_model_forward

        return L_model_forward(X, self.params)[0].reshape(-1)

    def arrays(self) -> Dict[str, np.ndarray]:
        # update_parameters returns new arrays, so these references are a snapshot already.
        return {"spec": np.array(json.dumps({"format": self.FORMAT, "layer_dims": self.dims, "dtype": self.dtype.name})),
                **{f"param/{k}": v for k, v in self.params.items()}}

    @classmethod
    def from_arrays(cls, config: dict, arrays: Dict[str, np.ndarray], where) -> "DnnRun":
        from ..nn.model import ModelMismatchError

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
        from .. import nn

        self.config = config
        self.model = nn.make_cnn(config["input_shape"], config["channels"], 1, dtype=config["dtype"], seed=config["seed"])
        self.loss = nn.BinaryCrossEntropy(from_logits=True)
        self.optimizer = nn.Adam(lr=config["lr"])

    @staticmethod
    def new_config(input_shape, args_cfg: dict) -> dict:
        return {**args_cfg, "input_shape": [int(s) for s in input_shape], "channels": list(CNN_CHANNELS)}

    def input_shape_ok(self, shape) -> bool:
        return tuple(shape) == tuple(self.config["input_shape"])

    def train_epoch(self, X, Y, epoch: int, on_batch=None):
        from ..nn.training import train_epoch

        return train_epoch(self.model, self.loss, self.optimizer, X, Y.reshape(-1, 1), batch_size=self.config["batch_size"],
                           seed=self.config["seed"], epoch=epoch, on_batch=on_batch)

    def proba(self, X) -> np.ndarray:
        from ..nn.training import predict_proba

        return predict_proba(self.model, self.loss, X).reshape(-1)

    def arrays(self) -> Dict[str, np.ndarray]:
        model = {"spec": np.array(json.dumps(self.model.spec())),
                 **{k: v.copy() for k, v in self.model.param_arrays().items()}}
        return {**model, **{f"opt/{k}": v for k, v in self.optimizer.state_dict().items()}}

    @classmethod
    def from_arrays(cls, config: dict, arrays: Dict[str, np.ndarray], where) -> "CnnRun":
        run = cls(config)
        rest = run.model.load_params({k: v for k, v in arrays.items() if not k.startswith("opt/")})
        opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
        if opt:
            run.optimizer.load_state_dict(opt)
        del rest
        return run


RUNS = {"dnn": DnnRun, "cnn": CnnRun}


# ---------------------------------------------------------------------- files


def _meta_array(meta: dict) -> np.ndarray:
    return np.array(json.dumps(meta))


def _save(path: Path, arrays: Dict[str, np.ndarray], meta: dict) -> None:
    """One .npz, written to a temporary name then renamed (an interrupted write leaves the old file)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays, meta=_meta_array(meta))
    os.replace(tmp, path)


def _load(path: Path):
    from ..nn.model import ModelMismatchError, read_npz

    arrays = read_npz(path)
    if "meta" not in arrays:
        raise ModelMismatchError(f"{path} has no 'meta' entry: not written by `fastnn train`")
    meta = json.loads(str(arrays.pop("meta")))
    run = RUNS[meta["config"]["model"]].from_arrays(meta["config"], arrays, path)
    return run, meta


def _plot(costs: List[float], path: Path, title: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no cost plot (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(costs)), costs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"wrote {path}"


# ------------------------------------------------------------------------- progress


class ProgressBar:
    """``[#####.....] epoch 3/20 batch 5/14 cost 0.5123`` redrawn in place on stderr (at most 10 times a
    second, and only on a terminal: a log file gets the per-epoch lines alone)."""

    def __init__(self, total_epochs: int, stream=None, enabled: bool = True, width: int = 30) -> None:
        self.total, self.stream, self.enabled, self.width = total_epochs, stream or sys.stderr, enabled, width
        isatty = getattr(self.stream, "isatty", None)
        self.live = enabled and bool(isatty and isatty())
        self._last = 0.0
        self._drawn = False

    def update(self, epoch: int, batch: int, n_batches: int, cost: float) -> None:
        now = time.perf_counter()
        if not self.live or (now - self._last < 0.1 and batch < n_batches):
            return
        self._last = now
        done = (epoch + batch / n_batches) / self.total
        fill = int(round(done * self.width))
        bar = "#" * fill + "." * (self.width - fill)
        self.stream.write(f"\r[{bar}] {100 * done:5.1f}% epoch {epoch + 1}/{self.total} "
                          f"batch {batch}/{n_batches} cost {cost:.6f}")
        self.stream.flush()
        self._drawn = True

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * (self.width + 70) + "\r")
            self._drawn = False


# ------------------------------------------------------------------------- run


def _dataset(args, layout: str, dtype):
    from ..data import load_cat_data

    train_x, train_y, test_x, test_y, classes = load_cat_data(args.data, layout=layout, dtype=dtype)
    return train_x, train_y.astype(dtype), test_x, test_y.astype(dtype), classes


def _settings(args, model: Optional[str] = None) -> dict:
    model = model or args.model or "dnn"
    d = DEFAULTS[model]
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else d[name]  # noqa: E731
    return {"model": model, "dtype": args.dtype or "float64", "epochs": pick("epochs"), "batch_size": pick("batch_size"),
            "lr": pick("lr"), "seed": pick("seed"), "checkpoint_every": pick("checkpoint_every"),
            "print_every": pick("print_every")}


def _check_settings(s: dict) -> None:
    if s["epochs"] < 0:
        raise UsageError(f"--epochs must be >= 0, got {s['epochs']}")
    if s["batch_size"] is not None and s["batch_size"] < 1:
        raise UsageError(f"--batch-size must be positive, got {s['batch_size']}")
    if not (s["lr"] > 0 and math.isfinite(s["lr"])):
        raise UsageError(f"--lr must be a positive number, got {s['lr']}")
    for k in ("checkpoint_every", "print_every"):
        if s[k] < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 1, got {s[k]}")


def _percent(acc: float, m: int) -> str:
    return f"{100 * acc:.2f}% ({int(round(acc * m))}/{m})"


def _train(args, on_batch: Optional[Callable[[int, int, int], None]] = None) -> int:
    from .._dispatch import resolve_name

    out = Path(args.out or Path("runs") / (args.model or "dnn"))
    ckpt = out / "checkpoint.npz"
    log = {"epochs": [], "cost": [], "train_accuracy": [], "seconds": []}
    if args.resume:
        if not ckpt.is_file():
            raise UsageError(f"--resume: no checkpoint at {ckpt} (train without --resume first, or pass its --out)")
        run, meta = _load(ckpt)
        cfg = run.config
        s = _settings(args, cfg["model"])
        _check_settings(s)
        for k in FIXED_ON_RESUME:
            given = getattr(args, k, None)
            if given is not None and given != cfg[k]:
                raise UsageError(f"--resume: the checkpoint was trained with {k}={cfg[k]!r}, "
                                 f"not {given!r}; leave --{k.replace('_', '-')} out or use another --out")
        log = meta["log"]
        dtype = np.dtype(cfg["dtype"])
        train_x, train_y, test_x, test_y, classes_b = _dataset(args, run.layout, dtype)
        if not run.input_shape_ok(_example_shape(train_x, run.layout)):
            raise UsageError(f"--resume: the data's images {_example_shape(train_x, run.layout)} do not fit the checkpoint's model")
        print(f"resuming from {ckpt} after epoch {len(log['cost'])}", file=sys.stderr)
    else:
        s = _settings(args)
        _check_settings(s)
        dtype = np.dtype(s["dtype"])
        cls = RUNS[s["model"]]
        train_x, train_y, test_x, test_y, classes_b = _dataset(args, cls.layout, dtype)
        cfg = cls.new_config(_example_shape(train_x, cls.layout),
                             {k: s[k] for k in ("model", "dtype", "batch_size", "lr", "seed")})
        run = cls(cfg)
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(classes_b).reshape(-1)]
    out.mkdir(parents=True, exist_ok=True)
    backend = resolve_name("conv_forward" if cfg["model"] == "cnn" else "relu")
    total = s["epochs"]
    start = len(log["cost"])
    every, print_every = s["checkpoint_every"], s["print_every"]

    def meta() -> dict:
        return {"config": cfg, "classes": classes, "log": log, "backend": backend}

    snapshot = run.arrays()  # the state after the last finished epoch (what Ctrl-C saves)
    bar = ProgressBar(max(total, 1), enabled=not args.quiet)
    m = train_y.size
    print(f"fastnn train: {cfg['model']} on {m} images, {cfg['dtype']}, backend {backend}, "
          f"epochs {start}..{total}, batch {cfg['batch_size'] or 'full'}, lr {cfg['lr']}, seed {cfg['seed']} -> {out}",
          file=sys.stderr)
    epoch = start
    try:
        for epoch in range(start, total):
            def batch_cb(done, n, cost, _e=epoch):
                bar.update(_e, done, n, cost)
                if on_batch is not None:
                    on_batch(_e, done, n)
            t0 = time.perf_counter()
            cost, acc = run.train_epoch(train_x, train_y, epoch, batch_cb)
            secs = time.perf_counter() - t0
            for k, v in (("epochs", epoch), ("cost", cost), ("train_accuracy", acc), ("seconds", secs)):
                log[k].append(v)
            snapshot = run.arrays()
            if (epoch + 1) % print_every == 0 or epoch == start or epoch + 1 == total:
                bar.line(f"epoch {epoch + 1:>4}/{total}  cost {cost:.6f}  train acc {100 * acc:6.2f}%  {secs:.3f} s/epoch")
            if (epoch + 1) % every == 0:
                _save(ckpt, snapshot, meta())
    except KeyboardInterrupt:
        bar.clear()
        _save(ckpt, snapshot, meta())
        print(f"\ninterrupted in epoch {epoch + 1}: saved the state after epoch {len(log['cost'])} to {ckpt}; "
              f"continue with --resume --out {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    bar.clear()
    _save(ckpt, snapshot, meta())

    train_acc = float(np.mean((run.proba(train_x) > 0.5) == (train_y.reshape(-1) > 0.5)))
    test_acc = float(np.mean((run.proba(test_x) > 0.5) == (test_y.reshape(-1) > 0.5)))
    secs = log["seconds"][start:] or log["seconds"]
    summary = {
        "train_accuracy": train_acc, "test_accuracy": test_acc,
        "seconds_per_epoch_median": float(np.median(secs)) if secs else None,
        "seconds_per_epoch_mean": float(np.mean(secs)) if secs else None,
        "first_cost": log["cost"][0] if log["cost"] else None,
        "final_cost": log["cost"][-1] if log["cost"] else None,
    }
    full_meta = {**meta(), "summary": summary}
    _save(out / "params.npz", snapshot, full_meta)
    with open(out / "log.json", "w") as f:
        json.dump(full_meta, f, indent=1)
    print(f"train accuracy: {_percent(train_acc, train_y.size)}")
    print(f"test accuracy:  {_percent(test_acc, test_y.size)}")
    if secs:
        print(f"time per epoch: {summary['seconds_per_epoch_median']:.4f} s (median of {len(secs)}, backend {backend})")
    print(_plot(log["cost"], out / "cost.png", f"fastnn {cfg['model']} ({cfg['dtype']}, lr {cfg['lr']})"),
          file=sys.stderr)
    print(f"wrote {out / 'params.npz'}, {ckpt}, {out / 'log.json'}", file=sys.stderr)
    return 0


def _example_shape(x: np.ndarray, layout: str):
    return tuple(x.shape[1:]) if layout == "nhwc" else (x.shape[0],)


# ------------------------------------------------------------------------- predict


def _predict(args) -> int:
    out = Path(args.out or Path("runs") / (args.model or "dnn"))
    path = out / "params.npz"
    if not path.is_file():
        path = out / "checkpoint.npz"
    if not path.is_file():
        raise UsageError(f"--predict: no trained model in {out} (params.npz or checkpoint.npz); "
                         f"train first, or pass the run's --out")
    run, meta = _load(path)
    if args.model is not None and args.model != run.config["model"]:
        raise UsageError(f"--predict: {path} holds a {run.config['model']} model, not {args.model}")
    from ..data import read_images

    x, y, names = read_images(args.predict)
    dtype = np.dtype(run.config["dtype"])
    x = x.astype(dtype)
    shape = tuple(x.shape[1:])
    if not run.input_shape_ok(shape if run.layout == "nhwc" else (int(np.prod(shape)),)):
        raise UsageError(f"--predict: the images are {shape}, the model was trained on "
                         f"{run.config.get('input_shape') or run.config.get('layer_dims')[:1]}; resize them first")
    X = x if run.layout == "nhwc" else x.reshape(x.shape[0], -1).T
    p = run.proba(X)
    classes = meta.get("classes") or ["0", "1"]
    for name, pi in zip(names, p):
        label = int(pi > 0.5)
        print(f"{name}: {classes[label] if label < len(classes) else label} (p(cat) = {pi:.4f})")
    if y is not None:
        acc = float(np.mean((p > 0.5) == (y > 0.5)))
        print(f"accuracy: {_percent(acc, y.size)}")
    return 0


def run(args, *, on_batch: Optional[Callable[[int, int, int], None]] = None) -> int:
    """The sub-command. ``on_batch(epoch, batch, n_batches)`` is a hook for tests."""
    from .. import use_backend
    from .._dispatch import BackendError
    from ..data import DataError
    from ..nn.model import ModelMismatchError

    ctx = use_backend(args.backend) if args.backend is not None else contextlib.nullcontext()
    try:
        with ctx:
            if args.predict:
                return _predict(args)
            return _train(args, on_batch)
    except (DataError, ModelMismatchError, BackendError, UsageError) as exc:
        print(f"fastnn train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
