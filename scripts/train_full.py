"""Full default runs of ``fastnn train`` on every backend, checked against the bars.

    python scripts/train_full.py --model dnn                      # every registered backend
    python scripts/train_full.py --model cnn --backends numba     # the ConvNet's default config
    python scripts/train_full.py --model dnn --backends numba im2col --dtype float32

Each run is :func:`fastnn.nn.trainer.train`, what ``fastnn train`` calls, with its defaults.
Bars:
  dnn: cost 0.771749 at iteration 0, train accuracy ~98.6% (206/209), test accuracy 80% (40/50);
  cnn: test accuracy >= 75% (on the 50 test images).
Each run writes to OUT/<model>-<backend>-<dtype>/ (params.npz, log.json, cost.png).
Exit status 1 if any run misses its bar. The reference backend is very slow for the cnn
(minutes per epoch): leave it out there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DNN_COST0 = 0.771749
DNN_TRAIN = 206 / 209  # 0.9856
DNN_TEST = 40 / 50
CNN_TEST_MIN = 0.75


def main(argv=None) -> int:
    import fastnn
    from fastnn._dispatch import BackendError
    from fastnn.data import DataError
    from fastnn.nn import ModelMismatchError, trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("dnn", "cnn"), default="dnn")
    ap.add_argument("--backends", nargs="*", default=None, help="default: every registered backend")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="runs/full")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    backends = args.backends or fastnn.available_backends()
    rows, ok = [], True
    for b in backends:
        out = Path(args.out) / f"{args.model}-{b}-{args.dtype}"
        print(f"== fastnn train --model {args.model} --backend {b} --dtype {args.dtype} --out {out}", file=sys.stderr)
        try:  # the very run `fastnn train` makes (progress and notes on stderr)
            result = trainer.train(out, data=args.data, model=args.model, dtype=args.dtype, backend=b, quiet=args.quiet)
        except (trainer.TrainingError, ModelMismatchError, DataError, BackendError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            rows.append((b, "FAILED", "", "", "", ""))
            ok = False
            continue
        s = result.summary
        if args.model == "dnn":
            tol = 1e-6 if args.dtype == "float64" else 1e-4
            passed = (abs(s["first_cost"] - DNN_COST0) < tol and abs(s["train_accuracy"] - DNN_TRAIN) < 0.011
                      and abs(s["test_accuracy"] - DNN_TEST) < 0.021)
        else:
            passed = s["test_accuracy"] >= CNN_TEST_MIN
        ok &= passed
        rows.append((b, f"{s['first_cost']:.6f}", f"{100 * s['train_accuracy']:.2f}%", f"{100 * s['test_accuracy']:.2f}%",
                     f"{s['seconds_per_epoch_median']:.4f}", "ok" if passed else "MISSED"))
    print(f"{args.model} {args.dtype}: default config of `fastnn train`")
    print(f"{'backend':<12} {'cost[0]':>10} {'train':>8} {'test':>8} {'s/epoch':>9}  bar")
    for r in rows:
        print(f"{r[0]:<12} {r[1]:>10} {r[2]:>8} {r[3]:>8} {r[4]:>9}  {r[5]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
