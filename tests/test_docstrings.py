"""Every public function of ``fastnn`` tells a student what to pass (``conv_forward?`` in Jupyter):
a numpydoc docstring with Parameters (each argument), Returns and Examples sections, and examples
that run as shown."""

import doctest
import inspect
import re

import numpy as np
import pytest

import fastnn

PUBLIC = sorted(name for name in fastnn.__all__ if inspect.isfunction(getattr(fastnn, name)))


def _params(name):
    return pytest.param(name, id=name)


def _section(doc: str, title: str):
    """The text of numpydoc section ``title`` (underlined with dashes), or None."""
    m = re.search(rf"^{title}\n-{{{len(title)}}}\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, re.M | re.S)
    return m.group(1) if m else None


def test_the_public_functions_are_found():
    assert {"conv_forward", "conv_backward", "pool_forward", "L_layer_model", "gradient_check_n"} <= set(PUBLIC)
    assert len(PUBLIC) >= 30


@pytest.mark.parametrize("name", [_params(n) for n in PUBLIC])
def test_numpydoc_sections(name):
    fn = getattr(fastnn, name)
    doc = inspect.getdoc(fn)
    assert doc, f"{name} has no docstring"
    summary = doc.splitlines()[0]
    assert summary and not summary.startswith(" "), f"{name}: the first line should say what it does"
    args = [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    params = _section(doc, "Parameters")
    if args:
        assert params is not None, f"{name}: no Parameters section"
        documented = re.findall(r"^(\w+) :", params, re.M)
        assert documented == args, f"{name}: Parameters documents {documented}, the signature has {args}"
    returns = _section(doc, "Returns")
    assert returns and returns.strip(), f"{name}: no Returns section"
    examples = _section(doc, "Examples")
    assert examples and ">>> " in examples, f"{name}: no Examples section"


@pytest.mark.parametrize("name", [_params(n) for n in PUBLIC])
def test_examples_run_as_shown(name):
    fn = getattr(fastnn, name)
    tests = doctest.DocTestFinder(recurse=False).find(fn, name, globs={})
    assert tests and tests[0].examples, f"{name} has no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    state = np.random.get_state()
    try:
        for t in tests:
            runner.run(t)
    finally:
        np.random.set_state(state)
        fastnn.set_backend(None)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (see the output above)"


def test_a_section_check_can_fail():
    """The checker itself: a docstring missing a parameter or a section is caught."""
    doc = "Do it.\n\nParameters\n----------\nx : int\n    The x.\n\nReturns\n-------\ny : int\n"
    assert re.findall(r"^(\w+) :", _section(doc, "Parameters"), re.M) == ["x"]
    assert _section(doc, "Returns").strip() == "y : int"
    assert _section(doc, "Examples") is None
