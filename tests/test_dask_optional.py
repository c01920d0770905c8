"""The optional ``fastnn[dask]`` extra from the outside, with or without Dask installed:
``import fastnn`` and training never import Dask, and without Dask ``fastnn.dask`` and
``fastnn train --dask`` say how to install it. (tests/test_dask.py tests fastnn.dask itself.)"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def _python(code, timeout=120):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)


def test_import_fastnn_and_training_never_import_dask():
    res = _python("import sys, fastnn, fastnn.nn, fastnn.nn.trainer, fastnn.cli, fastnn.cli.train\n"
                  "fastnn.cli.build_parser()\n"
                  "print(sorted(m for m in ('dask', 'distributed', 'fastnn.dask') if m in sys.modules))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_without_dask_the_error_names_the_extra():
    res = _python("import sys\nsys.modules['dask'] = None  # as if not installed\n"
                  "try:\n    import fastnn.dask\nexcept ImportError as e:\n    print(e)\n")
    assert res.returncode == 0, res.stderr
    assert "pip install 'fastnn[dask]'" in res.stdout
    res = _python("import sys\nsys.modules['dask'] = None\nfrom fastnn import cli\n"
                  "sys.exit(cli.main(['train', '--dask', 'local:2', '--data', 'nowhere']))")
    assert res.returncode == 2 and "--dask needs Dask: pip install 'fastnn[dask]'" in res.stderr, res.stderr
