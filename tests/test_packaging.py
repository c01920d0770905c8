"""The package follows Python's conventions: one version, an SPDX licence with its file,
classifiers that agree with ``requires-python``, ``py.typed``, ``python -m fastnn``."""

import pathlib
import re

import pytest

import fastnn

PACKAGE = pathlib.Path(fastnn.__file__).resolve().parent
REPO = PACKAGE.parent
PYPROJECT = REPO / "pyproject.toml"
needs_checkout = pytest.mark.skipif(not PYPROJECT.is_file(), reason="not run from a checkout (no pyproject.toml)")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads(PYPROJECT.read_text())


def test_version_is_a_release_string():
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", fastnn.__version__), fastnn.__version__


@needs_checkout
def test_the_version_is_written_in_one_place():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastnn.__version__"}
    # the one literal, in fastnn/__init__.py, and no other module spells it
    init = (PACKAGE / "__init__.py").read_text()
    assert re.findall(r'^__version__ = "([^"]+)"$', init, re.M) == [fastnn.__version__]
    spelt = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
             if re.search(r'\b__version__\s*=', p.read_text()) and p.name != "__init__.py"]
    assert spelt == []


@needs_checkout
def test_installed_metadata_agrees_when_installed_from_this_checkout():
    from importlib import metadata

    try:
        dist = metadata.distribution("fastnn")
    except metadata.PackageNotFoundError:
        pytest.skip("fastnn is not installed (run from the source tree)")
    direct = dist.read_text("direct_url.json") or ""
    if REPO.as_uri() not in direct:
        pytest.skip(f"the installed fastnn is not this checkout's ({direct or 'no direct_url.json'})")
    assert dist.version == fastnn.__version__


@needs_checkout
def test_spdx_license_and_its_file():
    project = _pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # PEP 639: the expression only


@needs_checkout
def test_classifiers_agree_with_requires_python():
    project = _pyproject()["project"]
    classifiers = project["classifiers"]
    assert len(classifiers) == len(set(classifiers))
    versions = sorted(int(c.rsplit(".", 1)[1]) for c in classifiers
                      if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert versions == [10, 11, 12, 13]
    assert project["requires-python"] == f">=3.{versions[0]}"
    assert "Operating System :: OS Independent" in classifiers
    assert any(c.startswith("Topic :: ") for c in classifiers) and "Typing :: Typed" in classifiers
    assert all(u.startswith("https://") for u in project["urls"].values())


@needs_checkout
def test_py_typed_is_package_data():
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["fastnn"]


def test_python_m_fastnn_is_the_command():
    main = (PACKAGE / "__main__.py").read_text()
    assert "from .cli import main" in main and "sys.exit(main())" in main
