"""``fastnn train``: the course's dense network or a small ConvNet on the cat/non-cat data.

This module only parses the options, calls :mod:`fastnn.nn.trainer` (the models, their
defaults and measured results, the training loop, the checkpoints, the progress display,
prediction are all described there) and maps its errors to exit codes: 2 (``EXIT_USAGE``)
for a bad option, missing or malformed data or a model file that does not fit, 130
(``EXIT_INTERRUPTED``) for Ctrl-C, after the checkpoint is saved.

Written to ``--out``: ``params.npz`` (the trained model), ``checkpoint.npz`` (model, optimiser
state and log after the last finished epoch: what ``--resume`` continues from, also written
when Ctrl-C interrupts), ``log.json`` and ``cost.png`` (if matplotlib is installed).
``--predict FILE`` classifies an image or an .h5 with the model saved in ``--out``.
``--dask local:N`` or ``--dask tcp://host:port`` trains data-parallel on a Dask cluster
(:mod:`fastnn.dask.parallel`; the optional extra ``fastnn[dask]``).
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

from ..nn.trainer import DEFAULTS, FIXED_ON_RESUME  # noqa: F401  (re-exported: the settings the options fill in)

HELP = "train the course's dense network or a small ConvNet on the cat/non-cat data"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Options passed to fastnn.nn.trainer.train under the same names (None: the default).
SETTINGS = ("model", "dtype", "epochs", "iterations", "batch_size", "lr", "seed", "checkpoint_every", "print_every")


def add_arguments(parser) -> None:
    a = parser.add_argument
    a("--data", metavar="DIR", help="directory with train_catvnoncat.h5 and test_catvnoncat.h5 "
      "(default: $FASTNN_DATA, then ../shared/datasets, then ./datasets)")
    a("--model", choices=sorted(DEFAULTS), default=None, help="dnn (the course's 5-layer network, default) or cnn")
    a("--backend", default=None, help="kernel backend (default: $FASTNN_BACKEND or auto; see `fastnn info`)")
    a("--dtype", choices=("float32", "float64"), default=None, help="float64 (default) or float32, end to end")
    a("--epochs", type=int, default=None, help="total epochs (dnn: full-batch iterations, default 2500; cnn: %d)"
      % DEFAULTS["cnn"]["epochs"])
    a("--iterations", type=int, default=None, metavar="N", help="dnn: total full-batch iterations, the course's "
      "num_iterations (the same as --epochs there; lines read 'Cost after iteration i' as the notebook prints them)")
    a("--batch-size", type=int, default=None, help="mini-batch size (dnn default: the full batch; cnn: %d)"
      % DEFAULTS["cnn"]["batch_size"])
    a("--lr", type=float, default=None, help="learning rate (dnn 0.0075, cnn Adam %g)" % DEFAULTS["cnn"]["lr"])
    a("--seed", type=int, default=None, help="initialisation and shuffling seed (dnn 1, cnn %d)" % DEFAULTS["cnn"]["seed"])
    a("--out", metavar="DIR", default=None, help="output directory (default runs/<model>)")
    a("--resume", action="store_true", help="continue from --out's checkpoint.npz up to --epochs in total")
    a("--checkpoint-every", type=int, default=None, metavar="N", help="write checkpoint.npz every N epochs "
      "(dnn 100, cnn 1; also at the end and on Ctrl-C)")
    a("--print-every", type=int, default=None, metavar="N", help="one log line every N epochs (dnn 100: iterations "
      "0, 100, ... as the course prints them; cnn 1)")
    a("--dask", metavar="CLUSTER", default=None, help="train data-parallel on Dask: local:N (N worker processes on "
      "this machine) or a running scheduler's address tcp://host:port; each batch is cut into one shard per worker thread "
      "(needs pip install 'fastnn[dask]')")
    a("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    a("--predict", metavar="IMAGE_OR_H5", help="classify an image (64x64 RGB) or an .h5 of images "
      "(course keys *_set_x, optional *_set_y) with the model saved in --out, instead of training")


def _percent(acc: float, m: int) -> str:
    return f"{100 * acc:.2f}% ({int(round(acc * m))}/{m})"


def _train(args, on_batch) -> int:
    from ..nn import trainer

    result = trainer.train(args.out, data=args.data, resume=args.resume, backend=args.backend, quiet=args.quiet,
                           on_batch=on_batch, dask=args.dask, **{k: getattr(args, k) for k in SETTINGS})
    s = result.summary
    print(f"train accuracy: {_percent(s['train_accuracy'], result.n_train)}")
    print(f"test accuracy:  {_percent(s['test_accuracy'], result.n_test)}")
    if result.timed_epochs:
        unit = "iteration" if result.per_iteration else "epoch"
        print(f"time per {unit}: {s['seconds_per_epoch_median']:.4f} s (median of {result.timed_epochs}, "
              f"backend {result.meta['backend']})")
    return 0


def _predict(args) -> int:
    from ..nn import trainer

    pred = trainer.predict(args.predict, args.out, model=args.model, backend=args.backend)
    for name, p, label in zip(pred.names, pred.proba, pred.labels):
        print(f"{name}: {label} (p(cat) = {p:.4f})")
    if pred.accuracy is not None:
        print(f"accuracy: {_percent(pred.accuracy, pred.proba.size)}")
    return 0


def _option(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def run(args, *, on_batch: Optional[Callable[[int, int, int], None]] = None) -> int:
    """The sub-command. ``on_batch(epoch, batch, n_batches)`` is a hook for tests."""
    from .._dispatch import BackendError
    from ..data import DataError
    from ..nn.model import ModelMismatchError
    from ..nn.trainer import SettingError, TrainingError, TrainingInterrupted

    try:
        if args.predict:
            if args.dask is not None:
                raise SettingError("dask", "trains on a cluster; --predict classifies here: leave --dask out")
            return _predict(args)
        return _train(args, on_batch)
    except TrainingInterrupted as exc:
        print(f"\n{exc}; continue with --resume --out {exc.checkpoint.parent}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SettingError as exc:
        print(f"fastnn train: error: {_option(exc.setting)} {exc.problem}", file=sys.stderr)
        return EXIT_USAGE
    except (DataError, ModelMismatchError, BackendError, TrainingError) as exc:
        print(f"fastnn train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
