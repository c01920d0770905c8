"""``fastnn check``: the conformance suite on a backend, or on one course-style function."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys

HELP = "run the conformance suite on a backend (fastnn check NAME) or a function (--function module:attr)"


def add_arguments(parser) -> None:
    parser.add_argument("backend", nargs="?", help="a registered backend, or one of its variants "
                        "(backend:variant; fastnn info lists them)")
    parser.add_argument("--function", metavar="MODULE:ATTR",
                        help="check one function with the course's signature, e.g. mynotebook:conv_forward "
                             "(MODULE may be a path to a .py file)")
    parser.add_argument("--as", dest="as_", metavar="NAME",
                        help="which course function it is (default: ATTR's name)")
    parser.add_argument("--ops", help="comma-separated ops: kernel ops (conv_forward, ...) or dense functions "
                        "(linear_forward, ...); default: all the subject has")
    parser.add_argument("--dtypes", help="comma-separated: float32,float64")
    parser.add_argument("--kinds", help="comma-separated kinds of check (golden, matrix, gradients, ...)")
    parser.add_argument("--quick", action="store_true", help="a few named cases per op")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")


def _load_function(spec: str):
    if ":" not in spec:
        raise ValueError(f"--function must be MODULE:ATTR, got {spec!r}")
    mod_name, attr = spec.rsplit(":", 1)
    if mod_name.endswith(".py") or os.path.sep in mod_name:
        path = os.path.abspath(mod_name)
        if not os.path.exists(path):
            raise ValueError(f"--function: no file {mod_name}")
        loader_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(mod_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"--function: {spec} is not callable")
    return obj, attr.split(".")[-1]


def _number(x):
    """An error for the JSON report: a float, or "inf", "-inf", "nan" where it is not finite
    (strict JSON has no Infinity or NaN), None where there is none."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else "nan" if math.isnan(x) else "inf" if x > 0 else "-inf"


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def run(args) -> int:
    import numpy as np

    from .. import _dispatch
    from ..testing import conformance

    def usage(msg):
        print(f"fastnn check: error: {msg}", file=sys.stderr)
        return 2

    if bool(args.backend) == bool(args.function):
        return usage("give a BACKEND or --function MODULE:ATTR (one of them)")
    ops, kinds = _split(args.ops), _split(args.kinds)
    for op in ops or ():
        if op not in conformance.ALL_OPS:
            return usage(f"unknown op {op!r}; ops are {', '.join(conformance.ALL_OPS)}")
    for k in kinds or ():
        if k not in conformance.KINDS:
            return usage(f"unknown kind {k!r}; kinds are {', '.join(conformance.KINDS)}")
    try:
        dtypes = [np.dtype(d) for d in _split(args.dtypes) or ()] or None
        if dtypes and any(d not in (np.float32, np.float64) for d in dtypes):
            raise TypeError
    except TypeError:
        return usage(f"unknown dtype in --dtypes {args.dtypes!r}; dtypes are float32, float64")
    if args.function:
        try:
            fn, attr = _load_function(args.function)
        except Exception as exc:  # noqa: BLE001  (an import error of the user's module)
            return usage(f"cannot load {args.function}: {type(exc).__name__}: {exc}")
        as_ = args.as_ or attr
        if as_ not in conformance.FUNCTIONS:
            return usage(f"{as_!r} is not a course function; pass --as one of {', '.join(conformance.FUNCTIONS)}")
        subject = conformance.function_subject(fn, as_, args.function)
        title = f"{args.function} as {as_}"
    else:
        try:
            conformance.backend_subject(args.backend)  # a backend, or a variant "backend:variant"
        except _dispatch.BackendError:
            return usage(f"unknown backend {args.backend!r}; available: {', '.join(_dispatch.available_backends())}; "
                         f"variants: {', '.join(conformance.variant_candidates()) or 'none'}")
        subject, title = args.backend, f"backend {args.backend}"
    selected = conformance.checks(subject, ops=ops, dtypes=dtypes, kinds=kinds, quick=args.quick)
    if not selected:
        has = [op for op in conformance.ALL_OPS if (subject.has(op) if not isinstance(subject, str)
                                                     else conformance.backend_subject(subject).has(op))]
        return usage(f"the selection matches no checks of {title} (--ops {args.ops or 'all'}, "
                     f"--dtypes {args.dtypes or 'default'}, --kinds {args.kinds or 'all'}); "
                     f"its ops are {', '.join(has)}")
    print(f"fastnn check {title}: {len(selected)} checks{' (--quick)' if args.quick else ''}")
    results, failed = [], 0
    for c in selected:
        p = c.run()
        results.append({"id": c.id, "kind": c.kind, "op": c.op, "passed": p is None,
                        "message": p and p.message, "max_abs": _number(p and p.max_abs),
                        "max_rel": _number(p and p.max_rel), "where": p and p.where})
        if p is not None:
            failed += 1
            print(f"FAIL {c.id}: {p.message}")
            sys.stdout.flush()
    if failed:
        print(f"FAILED: {failed} of {len(selected)} checks")
    else:
        print(f"passed: all {len(selected)} checks")
    if args.json:
        doc = {"schema": "fastnn-check/1", "subject": title, "quick": args.quick, "checks": len(selected),
               "failed": failed, "results": results}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1, allow_nan=False)  # strict JSON: no bare Infinity or NaN
    return 1 if failed else 0
