"""``fastnn check``: the conformance suite on a backend, or on one course-style function."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import linecache
import os
import sys
import types

HELP = "run the conformance suite on a backend (fastnn check NAME) or a function (--function module:attr)"


def add_arguments(parser) -> None:
    parser.add_argument("backend", nargs="?", help="a registered backend, or one of its variants "
                        "(backend:variant; fastnn info lists them)")
    parser.add_argument("--import", dest="import_", metavar="MODULE", action="append", default=[],
                        help="import this module (a name on the path, or a .py file) first: one that registers "
                             "the backend to check (repeatable)")
    parser.add_argument("--function", metavar="MODULE:ATTR",
                        help="check one function with the course's signature, e.g. mynotebook:conv_forward "
                             "(MODULE may be a path to a .py file or a Jupyter notebook, .ipynb)")
    parser.add_argument("--as", dest="as_", metavar="NAME",
                        help="which course function it is (default: ATTR's name)")
    parser.add_argument("--ops", help="comma-separated ops: kernel ops (conv_forward, ...) or dense functions "
                        "(linear_forward, ...); default: all the subject has")
    parser.add_argument("--dtypes", help="comma-separated: float32,float64")
    parser.add_argument("--kinds", help="comma-separated kinds of check (golden, matrix, gradients, ...)")
    parser.add_argument("--quick", action="store_true", help="a few named cases per op")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")


class _NoSuchFunction(ValueError):
    """The module or notebook has no such attribute."""


def _import(mod_name: str):
    """A module by name (the current directory on the path) or by the path of a .py file."""
    if mod_name.endswith(".py") or os.path.sep in mod_name:
        path = os.path.abspath(mod_name)
        if not os.path.isfile(path):
            raise ValueError(f"no file {mod_name}")
        loader_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(mod_name)


#: The statements of a notebook that --function runs: what defines the functions, not what runs them.
_DEFINES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _literal(node) -> bool:
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        return False
    try:
        ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False
    return True


def _load_notebook(path: str):
    """A Jupyter notebook's code cells as a module: of each cell, its imports, function and class
    definitions and constant assignments, in order (the cells that train or plot are not run;
    IPython's %magic and !shell lines are left out). Each cell is compiled under the name
    ``PATH[cell N]`` (N counts every cell from 1), whose lines tracebacks show. Returns the module
    and the notes on what was left out (a cell that does not parse, an import that fails)."""
    try:
        with open(path, encoding="utf-8") as fh:
            nb = json.load(fh)
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read {path} as a Jupyter notebook: {type(exc).__name__}: {exc}") from None
    module = types.ModuleType(os.path.splitext(os.path.basename(path))[0])
    module.__file__ = os.path.abspath(path)
    notes = []
    for n, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        lines = [(line[:len(line) - len(line.lstrip())] + "pass\n") if line.lstrip().startswith(("%", "!")) else line
                 for line in source.splitlines(True)]
        text = "".join(lines)
        name = f"{path}[cell {n}]"
        try:
            tree = ast.parse(text, name)
        except SyntaxError as exc:
            notes.append(f"cell {n} does not parse (SyntaxError: {exc.msg}, line {exc.lineno})")
            continue
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        for node in tree.body:
            if not (isinstance(node, _DEFINES) or _literal(node)):
                continue
            try:
                exec(compile(ast.Module(body=[node], type_ignores=[]), name, "exec"), module.__dict__)
            except Exception as exc:  # noqa: BLE001  (an import the notebook's machine had, a failing decorator)
                notes.append(f"cell {n}, line {node.lineno}: {type(exc).__name__}: {exc}")
    return module, notes


def _load_function(spec: str):
    if ":" not in spec:
        raise ValueError(f"--function must be MODULE:ATTR, got {spec!r}")
    mod_name, attr = spec.rsplit(":", 1)
    notes = []
    if mod_name.endswith(".ipynb"):
        if not os.path.isfile(mod_name):
            raise ValueError(f"no file {mod_name}")
        module, notes = _load_notebook(mod_name)
    else:
        module = _import(mod_name)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            defined = sorted(k for k, v in vars(module).items() if isinstance(v, types.FunctionType)
                             and v.__module__ == module.__name__ and not k.startswith("_"))
            raise _NoSuchFunction(f"{mod_name} defines no {attr!r}; its functions: {', '.join(defined) or 'none'}"
                                  + "".join(f"; {n}" for n in notes))
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"--function: {spec} is not callable")
    return obj, attr.split(".")[-1]


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def run(args) -> int:
    import numpy as np

    from .. import _dispatch
    from ..testing import conformance
    from .bench import check_output_path

    def usage(msg):
        print(f"fastnn check: error: {msg}", file=sys.stderr)
        return 2

    if bool(args.backend) == bool(args.function):
        return usage("give a BACKEND or --function MODULE:ATTR (one of them)")
    if args.import_ and args.function:
        return usage("--import is for a BACKEND that a module registers; --function loads its own module")
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
    if args.json:  # before the run: a report that cannot be written is known now, not after it
        why = check_output_path(args.json)
        if why:
            return usage(f"--json {args.json}: {why} (checked before running, so nothing was checked)")
    if args.function:
        try:
            fn, attr = _load_function(args.function)
        except Exception as exc:  # noqa: BLE001  (an import error of the user's module)
            said = str(exc) if isinstance(exc, _NoSuchFunction) else f"{type(exc).__name__}: {exc}"
            return usage(f"cannot load {args.function}: {said}")
        as_ = args.as_ or attr
        if as_ not in conformance.FUNCTIONS:
            return usage(f"{as_!r} is not a course function; pass --as one of {', '.join(conformance.FUNCTIONS)}")
        subject = conformance.function_subject(fn, as_, args.function)
    else:
        for mod_name in args.import_:
            try:
                _import(mod_name)
            except Exception as exc:  # noqa: BLE001  (the module's own error)
                return usage(f"--import {mod_name}: {type(exc).__name__}: {exc}")
        try:
            conformance.backend_subject(args.backend)  # a backend, or a variant "backend:variant"
        except _dispatch.BackendError:
            return usage(f"unknown backend {args.backend!r}; available: {', '.join(_dispatch.available_backends())}; "
                         f"variants: {', '.join(conformance.variant_candidates()) or 'none'}"
                         + ("" if args.import_ else "; --import MODULE imports a module that registers one"))
        subject = args.backend
    try:
        result = conformance.report(subject, ops=ops, dtypes=dtypes, kinds=kinds, quick=args.quick)
    except ValueError as exc:  # a selection that matches no checks (the subject was checked above)
        return usage(str(exc))
    if args.json:
        text = json.dumps(result.as_json(), indent=1, allow_nan=False)  # strict JSON: no bare Infinity or NaN
        try:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            print(f"fastnn check: error: --json {args.json} could not be written ({exc.strerror or exc})",
                  file=sys.stderr)
            return 2
    return 1 if result.failed else 0
