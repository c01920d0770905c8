"""The planner behind ``auto`` (fastnn._plan): plans route ``auto`` per call key, candidates
that disagree with the ground truth are never chosen, plan files survive corruption, other
machines and concurrent writers, autotuning tunes a key on first sight, ``fastnn tune``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _cache, _dispatch, _plan
from fastnn import _params as P
from fastnn.cli import main
from fastnn.testing.tolerance import assert_close

REF = _dispatch.ground_truth_backend()


@pytest.fixture
def planner(tmp_path, monkeypatch):
    """A fresh planner over an empty cache directory; the real state comes back afterwards."""
    monkeypatch.setattr(_cache, "_resolved", str(tmp_path))
    monkeypatch.setattr(_plan, "_plans", None)
    monkeypatch.setattr(_plan, "_memo", {})
    monkeypatch.setattr(_plan, "_autotune", False)
    monkeypatch.setattr(_plan, "_warned", False)
    _plan._install()
    yield _plan
    monkeypatch.undo()
    _plan._install()


def _conv(dtype=np.float64, m=2, H=9, W=9, C=5, K=7, f=3, s=1, pad=1, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, H, W, C)).astype(dtype)
    Wt = rng.standard_normal((f, f, C, K)).astype(dtype)
    b = rng.standard_normal((1, 1, 1, K)).astype(dtype)
    hp = {"stride": s, "pad": pad}
    return A, Wt, b, hp, P.conv_params(A, Wt, b, hp)


def _entry(backend):
    return {"backend": backend, "times_s": {backend: 1e-3}, "rejected": {}, "tuned": "test"}


def test_a_plan_routes_auto_per_key_and_pinning_still_wins(planner):
    default = _dispatch.available_backends("conv_forward")[0]
    other = [b for b in _dispatch.available_backends("conv_forward") if b not in (default, REF)][0]
    A, W, b, hp, p = _conv()
    _, _, _, _, q = _conv(H=11)
    planner._save({planner.key_of("conv_forward", p): _entry(other)})
    assert _dispatch.resolve_name("conv_forward", None, p) == other
    assert _dispatch.resolve_name("conv_forward", None, q) == default  # no plan: the default rule
    assert _dispatch.resolve_name("conv_forward", default, p) == default  # a pinned backend is not planned
    with fastnn.use_backend(default):
        assert _dispatch.resolve_name("conv_forward", None, p) == default
    Z, _ = fastnn.conv_forward(A, W, b, hp)
    assert_close(Z, fastnn.conv_forward(A, W, b, hp, backend=_dispatch.ground_truth_backend())[0], A.dtype, "Z")
    assert "plan" in planner.explain("conv_forward", p) and other in planner.explain("conv_forward", p)
    assert "no plan" in planner.explain("conv_forward", q)


def test_a_plan_is_read_by_a_new_process(planner, tmp_path):
    _, _, _, _, p = _conv()
    other = [b for b in _dispatch.available_backends("conv_forward") if b != REF][-1]
    planner._save({planner.key_of("conv_forward", p): _entry(other)})
    code = ("import numpy as np, fastnn; from fastnn import _dispatch, _params as P; "
            "A = np.zeros((2, 9, 9, 5)); W = np.zeros((3, 3, 5, 7)); b = np.zeros((1, 1, 1, 7)); "
            "print(_dispatch.resolve_name('conv_forward', None, P.conv_params(A, W, b, {'stride': 1, 'pad': 1})))")
    env = dict(os.environ, FASTNN_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == other


@pytest.fixture
def wrong_backend():
    """A high-priority backend whose convolution is fast and wrong (zeros)."""
    _dispatch.register_backend("wrong", priority=99, description="test: fast and wrong")

    @_dispatch.register("conv_forward", "wrong")
    def conv_forward(p, A_prev, W, b, Z):
        Z.fill(0)

    yield "wrong"
    _dispatch.unregister_backend("wrong")


def test_a_candidate_that_disagrees_with_the_ground_truth_is_never_chosen(planner, wrong_backend):
    _, _, _, _, p = _conv()
    entry = planner.tune_key("conv_forward", p, budget_s=0.05)
    assert wrong_backend in entry["rejected"] and "differ" in entry["rejected"][wrong_backend]
    assert entry["backend"] != wrong_backend and entry["backend"] in _dispatch.available_backends("conv_forward")
    assert wrong_backend not in entry["times_s"]
    assert planner.plans()[planner.key_of("conv_forward", p)]["backend"] == entry["backend"]


def test_the_fastest_candidate_is_chosen(planner, monkeypatch):
    _, _, _, _, p = _conv()
    slow, fast = [b for b in _dispatch.available_backends("conv_forward") if b != REF][:2]
    monkeypatch.setattr(planner, "_time", lambda calls, budget_s, **kw: {slow: 2.0, fast: 1.0})
    assert planner.tune_key("conv_forward", p)["backend"] == fast
    monkeypatch.setattr(planner, "_time", lambda calls, budget_s, **kw: {slow: 1.0, fast: 2.0})
    assert planner.tune_key("conv_forward", p)["backend"] == slow
    assert _dispatch.resolve_name("conv_forward", None, p) == slow


@pytest.fixture
def variant_backend():
    """A low-priority backend with a right variant for K >= 7 and a wrong one (zeros) for all calls."""
    name = "withvariants"
    _dispatch.register_backend(name, priority=-5, description="test: variants")
    ref = _dispatch.kernel_of("conv_forward", REF)
    _dispatch.register("conv_forward", name)(lambda p, A, W, b, Z: ref(p, A, W, b, Z))
    _dispatch.register("conv_forward", name, variant="right", applies=lambda p: p.K >= 7)(
        lambda p, A, W, b, Z: ref(p, A, W, b, Z))

    def wrong(p, A_prev, W, b, Z):
        Z.fill(0)

    _dispatch.register("conv_forward", name, variant="wrong")(wrong)
    yield name
    _dispatch.unregister_backend(name)


def test_variants_are_candidates_a_plan_may_name_and_a_pin_never_runs(planner, variant_backend, monkeypatch):
    right, wrong = variant_backend + ":right", variant_backend + ":wrong"
    A, W, b, hp, p = _conv(K=7)
    _, _, _, _, q = _conv(K=6)
    assert {right, wrong} <= set(_dispatch.candidates("conv_forward", p))
    assert wrong in _dispatch.candidates("conv_forward", q) and right not in _dispatch.candidates("conv_forward", q)
    assert _dispatch.variants("conv_forward", variant_backend) == ["right", "wrong"]
    # The wrong variant fails the check and is never timed; the right one may win.
    monkeypatch.setattr(planner, "_time", lambda calls, budget_s, **kw: {n: (0.5 if n == right else 1.0) for n in calls})
    entry = planner.tune_key("conv_forward", p, budget_s=0.05)
    assert wrong in entry["rejected"] and wrong not in entry["times_s"] and right in entry["times_s"]
    assert entry["backend"] == right
    assert _dispatch.resolve_name("conv_forward", None, p) == right
    assert _dispatch.resolve_name("conv_forward", variant_backend, p) == variant_backend  # pinned: its own kernel
    assert right in planner.explain("conv_forward", p)
    Z, _ = fastnn.conv_forward(A, W, b, hp)
    assert_close(Z, fastnn.conv_forward(A, W, b, hp, backend=REF)[0], A.dtype, "Z")
    # A plan naming a variant that no longer applies (or is gone) falls back to the default rule.
    planner._save({planner.key_of("conv_forward", q): _entry(right)})
    assert _dispatch.resolve_name("conv_forward", None, q) == _dispatch.available_backends("conv_forward")[0]


def test_variant_names_are_checked():
    with pytest.raises(ValueError, match="variant"):
        _dispatch.register("conv_forward", REF, variant="a:b")
    with pytest.raises(ValueError, match="applies"):
        _dispatch.register("conv_forward", REF, applies=lambda p: True)
    with pytest.raises(ValueError, match="backend name"):
        _dispatch.register_backend("x:y")


@pytest.mark.parametrize("content", [b"{not json", json.dumps({"schema": "other/9", "plans": {}}).encode(),
                                     b"\x00\xff", json.dumps([1, 2]).encode()])
def test_a_corrupt_plan_file_is_ignored_with_one_warning(planner, content):
    path = planner.plan_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    planner._reload()
    _, _, _, _, p = _conv()
    with pytest.warns(RuntimeWarning, match="ignoring it"):
        assert _dispatch.resolve_name("conv_forward", None, p) == _dispatch.available_backends("conv_forward")[0]
    assert planner.plans() == {}


def test_another_machines_plan_file_is_ignored(planner):
    _, _, _, _, p = _conv()
    other = [b for b in _dispatch.available_backends("conv_forward") if b != REF][-1]
    machine = dict(planner.machine(), cpu="some-other-cpu")
    path = planner.plan_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"schema": planner.SCHEMA, "machine": machine,
                   "plans": {planner.key_of("conv_forward", p): _entry(other)}}, f)
    planner._reload()
    with pytest.warns(RuntimeWarning, match="another machine"):
        assert planner.plans() == {}


def test_two_processes_saving_at_once_lose_nothing(planner, tmp_path):
    code = ("import sys; from fastnn import _plan; "
            "[_plan._save({f'k{sys.argv[1]}-{i}': {'backend': 'numba', 'times_s': {}, 'rejected': {}, 'tuned': 't'}})"
            " for i in range(25)]")
    env = dict(os.environ, FASTNN_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)], env=env) for w in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    planner._reload()
    assert set(planner.plans()) == {f"k{w}-{i}" for w in range(3) for i in range(25)}
    assert not [f for f in os.listdir(os.path.dirname(planner.plan_file())) if f.endswith(".tmp")]


def test_autotune_tunes_a_new_key_on_first_sight(planner):
    A, W, b, hp, p = _conv(np.float32, seed=3)
    planner.set_autotune(True)
    assert planner.plans() == {}
    Z, _ = fastnn.conv_forward(A, W, b, hp)
    entry = planner.plans()[planner.key_of("conv_forward", p)]
    assert entry["backend"] in _dispatch.candidates("conv_forward", p)
    assert_close(Z, fastnn.conv_forward(A, W, b, hp, backend=_dispatch.ground_truth_backend())[0], np.float32, "Z")
    planner.set_autotune(False)


def test_reduced_shapes_keep_the_window_and_channels():
    for hp, f in (({"stride": 2, "pad": 1}, 3), ({"stride": 1, "pad": 3}, 7), ({"stride": 3, "pad": 0}, 2)):
        A = np.zeros((4, 30, 31, 6))
        p = P.conv_params(A, np.zeros((f, f, 6, 9)), np.zeros((1, 1, 1, 9)), hp)
        q = _plan._reduced(p)
        assert (q.m, q.C, q.K, q.fh, q.sh, q.ph) == (1, 6, 9, f, p.sh, p.ph)
        # 3 output rows and 9 columns: every tile of up to 8 pixels that fits the call fits
        assert q.Ho == min(p.Ho, 3) and q.Wo == min(p.Wo, 9), (q.Ho, q.Wo)


def test_options_beyond_the_course_survive_reduction_and_recording():
    """Groups, dilation, uneven pads, ceil_mode and divisors stay in the reduced shape a candidate is
    checked on and in a recorded call read back."""
    from fastnn.testing.cases import CONV_CASES, POOL_CASES

    for case in CONV_CASES.values():
        p = case.params
        q = _plan._reduced(p)
        assert (q.G, q.dh, q.dw, q.ph, q.pb, q.pw, q.pr, q.K, q.C) == (p.G, p.dh, p.dw, p.ph, p.pb, p.pw, p.pr, p.K, p.C)
        for op in ("conv_forward", "conv_backward"):
            assert _plan.params_from_dict(op, _plan.params_dict(p)) == p
    for case in POOL_CASES.values():
        shape = (case.m, case.C, case.H, case.W) if case.layout == "NCHW" else (case.m, case.H, case.W, case.C)
        for mode in ("max", "average"):
            p = P.pool_params(np.zeros(shape), case.hparameters, mode)
            assert _plan.params_from_dict("pool_forward", _plan.params_dict(p)) == p
            q = _plan._reduced(p)
            assert (q.ph, q.pb, q.pw, q.pr, q.C, q.fh, q.fw) == (p.ph, p.pb, p.pw, p.pr, p.C, p.fh, p.fw)
    old = {k: v for k, v in _plan.params_dict(CONV_CASES["course"].params).items() if k not in ("pb", "pr", "dh", "dw", "G")}
    assert _plan.params_from_dict("conv_forward", old) == CONV_CASES["course"].params  # a record from before the options
    with pytest.raises(ValueError, match="do not match"):
        _plan.params_from_dict("conv_forward", {**old, "pb": 3})


def test_cli_tune_show_clear_and_errors(planner, capsys):
    assert main(["tune", "--shapes", "seed", "--ops", "conv_forward", "--dtypes", "float64", "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "conv_forward" in out and "stored 1 keys" in out
    assert main(["tune", "--show"]) == 0 and "1 keys" in capsys.readouterr().out
    assert main(["tune", "--shapes", "nope"]) == 2 and "unknown shape 'nope'" in capsys.readouterr().err
    assert main(["tune", "--dtypes", "int8"]) == 2 and "--dtypes" in capsys.readouterr().err
    assert main(["tune", "--ops", "relu"]) == 2 and "ops must be among" in capsys.readouterr().err
    assert main(["tune", "--clear"]) == 0
    assert planner.plans() == {} and not os.path.exists(planner.plan_file())


def test_a_backward_key_is_timed_with_the_forward_auto_runs(planner):
    _, _, _, _, p = _conv(np.float32)
    entry = planner.tune_key("conv_backward", p, budget_s=0.05)
    fwd = planner.plans()[planner.key_of("conv_forward", p)]["backend"]  # tuned first, for the pairs
    assert entry["timed_with"] == f"conv_forward on {fwd}"
    A = np.random.default_rng(0).standard_normal((2, 8, 8, 4))
    q = P.pool_params(A, {"f": 2, "stride": 2}, "max", "first")
    entry = planner.tune_key("pool_backward", q, budget_s=0.05)
    assert entry["timed_with"].startswith("pool_forward on ")
    assert planner.key_of("pool_forward", q._replace(ties="all")) in planner.plans()


def test_call_specs_parse_like_the_public_functions():
    (op1, p), (op2, q) = _plan.parse_call("conv,m=2,h=9,w=9,c=5,f=3,k=7,stride=1,pad=1,dtype=float64")
    assert (op1, op2) == ("conv_forward", "conv_backward") and p == q == _conv()[-1]
    [(op, r)] = _plan.parse_call("pool_backward,m=2,h=8,w=7,c=3,f=2x3,stride=2,mode=average,dtype=float32")
    A = np.zeros((2, 8, 7, 3), np.float32)
    assert op == "pool_backward" and r == P.pool_params(A, {"f": (2, 3), "stride": 2}, "average")
    [(_, n)] = _plan.parse_call("conv_forward,m=2,h=9,w=9,c=5,f=3,k=7,stride=1,pad=1,dtype=float64,layout=NCHW")
    assert n == _conv()[-1]._replace(layout="NCHW") != p
    for bad, match in (("dense,m=1", "starts with"), ("conv,m=2,h=9", "lacks"), ("conv,m=2,h=9,w=9,c=5,f=3,k=7,q=1", "key=value"),
                       ("conv,m=2,h=9,w=9,c=5,f=3,k=7,layout=CHWN", "layout must be one of"),
                       ("conv,m=2,h=9,w=9,c=5,f=3,k=7,layout=nchw", "layout must be one of"),
                       ("conv,m=2,h=9,w=9,c=5,f=x,k=7", "integer"), ("conv,m=2,h=9,w=9,c=5,f=3,k=7,dtype=int8", "float32"),
                       ("conv,m=2,h=4,w=4,c=5,f=9,k=7", "larger than")):
        with pytest.raises(ValueError, match=match):
            _plan.parse_call(bad)


def _nchw_twin(A, W, b, hp):
    """A call's channels-first arrays and hparameters."""
    return (np.ascontiguousarray(A.transpose(0, 3, 1, 2)), np.ascontiguousarray(W.transpose(3, 2, 0, 1)), b.reshape(-1),
            dict(hp, layout="NCHW"))


@pytest.fixture
def spy_backend():
    """A low-priority backend running the ground truth's kernels on NHWC arrays, counting its
    calls; ``cf_wrong=True``: it also claims to read channels-first arrays itself, and gets
    them wrong (zeros), as a kernel with a broken NCHW path would."""
    calls = []
    ref = _dispatch.kernel_of("conv_forward", REF)

    def make(cf_wrong=False):
        """``cf_wrong``: False, True, or a predicate of p (claims NCHW only where it holds)."""
        _dispatch.register_backend("spy", priority=-50, description="test: the reference, counted")

        @_dispatch.register("conv_forward", "spy")
        def conv_forward(p, A_prev, W, b, Z):
            calls.append(p)
            if not (A_prev.flags.c_contiguous and Z.flags.c_contiguous):
                Z.fill(0)
            else:
                ref(p, A_prev, W, b, Z)

        if cf_wrong:
            conv_forward.channels_first = cf_wrong if callable(cf_wrong) else (lambda p: True)
        return calls

    yield make
    _dispatch.unregister_backend("spy")


def test_a_channels_first_call_has_its_own_key_and_plan(planner, spy_backend):
    """The layout is part of a convolution's key: a plan for an NCHW call does not route its NHWC
    twin, nor the other way round, and the NCHW call's padded NHWC call runs the kernel chosen for
    its key (not one chosen again for a key of its own)."""
    calls = spy_backend()
    A, W, b, hp, p = _conv(pad=1)
    An, Wn, bn, hpn = _nchw_twin(A, W, b, hp)
    pn = P.conv_params(An, Wn, bn, hpn)
    assert pn == p._replace(layout="NCHW") and pn.layout == "NCHW" and p.layout == "NHWC"
    assert planner.key_of("conv_forward", pn) != planner.key_of("conv_forward", p)
    assert "layout" not in planner.key_of("conv_forward", p)  # (NHWC keys read as they always did)
    assert planner.key_of("conv_forward", pn).endswith(",layout=NCHW|t%d" % _plan._threads())
    default = _dispatch.available_backends("conv_forward")[0]
    planner._save({planner.key_of("conv_forward", pn): _entry("spy")})
    assert _dispatch.resolve_name("conv_forward", None, pn) == "spy"
    assert _dispatch.resolve_name("conv_forward", None, p) == default
    Zn, _ = fastnn.conv_forward(An, Wn, bn, hpn)
    assert len(calls) == 1 and calls[0].layout == "NHWC" and calls[0].H == p.Hp  # the padded call, on spy
    assert_close(Zn, fastnn.conv_forward(A, W, b, hp, backend=REF)[0].transpose(0, 3, 1, 2), A.dtype, "Z")
    fastnn.conv_forward(A, W, b, hp)
    assert len(calls) == 1  # the NHWC twin: the default rule
    assert "spy" in planner.explain("conv_forward", pn) and "layout=NCHW" in planner.explain("conv_forward", pn)
    # an NCHW key with no plan of its own follows its NHWC twin's (what it ran before the layout counted)
    A, W, b, hp, q = _conv(H=11, pad=0)
    qn = P.conv_params(*_nchw_twin(A, W, b, hp))
    planner._save({planner.key_of("conv_forward", q): _entry("spy")})
    assert _dispatch.resolve_name("conv_forward", None, qn) == "spy"


def test_an_nchw_key_is_checked_and_timed_through_the_public_functions(planner, spy_backend):
    """A kernel right on NHWC arrays but wrong on the channels-first views the wrapper hands it is
    accepted for the NHWC key and rejected for the NCHW one; the NCHW key's candidates are timed
    with the wrapper's copies, and the tuner's own calls are not recorded."""
    spy_backend(cf_wrong=True)
    A, W, b, hp, p = _conv(pad=0)
    pn = P.conv_params(*_nchw_twin(A, W, b, hp))
    nhwc = planner.tune_key("conv_forward", p, budget_s=0.05)
    with fastnn.record() as recorded:
        nchw = planner.tune_key("conv_forward", pn, budget_s=0.05)
    assert "spy" not in nhwc["rejected"] and "spy" in nhwc["times_s"]
    assert "NCHW" in nchw["rejected"]["spy"] and "differ" in nchw["rejected"]["spy"]
    assert "spy" not in nchw["times_s"] and nchw["backend"] != "spy"
    assert set(nchw["times_s"]) == set(_dispatch.candidates("conv_forward", pn)) - {REF, "spy"}
    assert not recorded  # (the tuner's calls of the public functions)
    back = planner.tune_key("conv_backward", pn, budget_s=0.05)
    assert back["timed_with"] == "conv_forward on " + nchw["backend"] and not back["rejected"]
    assert planner.key_of("conv_backward", pn) in planner.plans()
    with fastnn.record() as recorded:
        fastnn.conv_forward(*_nchw_twin(A, W, b, hp))
    assert [(op, q.layout) for op, q in recorded] == [("conv_forward", "NCHW")]
    assert _plan.params_from_dict("conv_forward", _plan.params_dict(pn)) == pn


def test_an_nchw_check_runs_the_path_the_full_call_takes(planner, spy_backend):
    """A kernel that reads NCHW arrays itself only from some size on (numba's small calls take
    copies) is checked on a reduced call grown until it takes that path: its broken NCHW path is
    found though the one-image reduced call would have taken copies."""
    spy_backend(cf_wrong=lambda p: p.m * p.Ho * p.Wo >= 40)
    A, W, b, hp, _ = _conv(pad=0)
    pn = P.conv_params(*_nchw_twin(A, W, b, hp))
    q = _plan._reduced(pn)
    assert q.m * q.Ho * q.Wo < 40 <= pn.m * pn.Ho * pn.Wo  # (the reduced call alone would take copies)
    why = _plan._check("conv_forward", pn, "spy")
    assert why is not None and "NCHW" in why and "differ" in why


def test_recording_collects_the_calls_a_program_ran_and_tune_takes_them(planner, tmp_path, monkeypatch):
    A, W, b, hp, p = _conv()
    path = str(tmp_path / "rec.json")
    with fastnn.record(path) as calls:
        for _ in range(3):
            Z, cache = fastnn.conv_forward(A, W, b, hp, backend=REF)
        fastnn.conv_backward(np.ones_like(Z), cache)
        fastnn.pool_forward(A, {"f": 2, "stride": 2}, "max")
        fastnn.relu(A)  # (not a tunable op: not recorded)
    assert calls[("conv_forward", p)] == 3 and calls[("conv_backward", p)] == 1 and len(calls) == 3
    fastnn.conv_forward(A, W, b, hp)  # outside the block: not recorded
    with fastnn.record(path):
        fastnn.conv_forward(A, W, b, hp)
    data = json.load(open(path))
    assert data["schema"] == _plan.RECORD_SCHEMA and data["calls"][0]["count"] == 4  # merged
    got = fastnn.recorded(path)
    assert got[0] == ("conv_forward", p) and len(got) == 3
    tuned = []
    monkeypatch.setattr(planner, "tune_key", lambda op, q, **kw: tuned.append((op, q)) or _entry("numba"))
    assert main(["tune", "--record", path, "--ops", "conv_forward,conv_backward", "--budget", "0.05"]) == 0
    assert tuned == [("conv_forward", p), ("conv_backward", p)]
    assert main(["tune", "--record", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot be read"):
        fastnn.recorded(str(tmp_path / "bad.json"))


def test_fastnn_record_env_writes_the_record_at_exit(tmp_path):
    path = tmp_path / "prog.json"
    code = ("import numpy as np, fastnn; A = np.ones((1, 6, 6, 2)); "
            "[fastnn.pool_forward(A, {'f': 2, 'stride': 2}, 'average') for _ in range(5)]")
    env = dict(os.environ, FASTNN_CACHE_DIR=str(tmp_path), FASTNN_RECORD=str(path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "recorded 1 distinct calls" in out.stderr
    [(op, q)] = fastnn.recorded(str(path))
    assert op == "pool_forward" and (q.m, q.H, q.C, q.fh, q.mode) == (1, 6, 2, 2, "average")


def test_info_explain_shows_the_choice_and_the_candidates(planner, capsys):
    spec = "conv,m=2,h=9,w=9,c=5,f=3,k=7,stride=1,pad=1,dtype=float64"
    assert main(["info", "--explain", spec]) == 0
    out = capsys.readouterr().out
    assert "conv_forward: " in out and "conv_backward: " in out and "candidates" in out and "no plan" in out
    _, _, _, _, p = _conv()
    other = [b for b in _dispatch.available_backends("conv_forward") if b != REF][-1]
    planner._save({planner.key_of("conv_forward", p): dict(_entry(other), tuning_s=0.25)})
    assert main(["info", "--explain", spec]) == 0
    assert f"conv_forward: {other} (plan" in capsys.readouterr().out
    assert main(["info", "--explain", "conv,m=2"]) == 2
    assert main(["info"]) == 0 and "tuning took 0.25 s per key" in capsys.readouterr().out


def test_pick_keeps_the_default_unless_the_fastest_wins_by_the_margin():
    d = "numba"
    # 1% faster by its median: within noise, the default rule's choice stays
    close = {"numba": [1.0, 1.0, 1.0, 1.0, 1.0], "im2col": [0.99, 0.99, 0.99, 0.99, 0.99]}
    best, kept = _plan._pick({n: 1.0 if n == d else 0.99 for n in close}, close, d)
    assert best == d and kept is not None and "im2col" in kept
    # 10% faster in every paired round: the plan takes it
    clear = {"numba": [1.0] * 5, "im2col": [0.9] * 5}
    assert _plan._pick({"numba": 1.0, "im2col": 0.9}, clear, d) == ("im2col", None)
    # faster by the median of its times but losing most paired rounds (a drifting host): default kept
    drift = {"numba": [1.0, 1.0, 1.0, 0.5, 0.5], "im2col": [1.1, 1.1, 1.1, 0.4, 0.4]}
    assert _plan._pick({"numba": 1.0, "im2col": 0.9}, drift, d)[0] == d
    # the default never timed (pruned as a clear loser before the rounds): the fastest by median
    assert _plan._pick({"numba": 2.0, "im2col": 0.5}, {"im2col": [0.5] * 3}, d) == ("im2col", None)
    # the default itself fastest
    assert _plan._pick({"numba": 0.5, "im2col": 0.6}, clear, d) == ("numba", None)


def test_tune_times_each_key_once(planner, monkeypatch):
    """The table's NCHW layer runs the same kernel key as its NHWC twin: timed once, not twice
    (a second, noisier timing of the same key would overwrite the first)."""
    tuned = []
    monkeypatch.setattr(planner, "tune_key", lambda op, q, **kw: tuned.append(_plan.key_of(op, q)) or _entry("numba"))
    found = fastnn.tune(ops=["conv_forward"], dtypes=["float32"], shapes=["res_3x3", "res_3x3_nchw"], budget_s=0.01)
    assert len(tuned) == len(set(tuned)) == len(found) >= 1


def test_a_winner_over_the_default_is_confirmed_in_fresh_rounds(planner, monkeypatch):
    """A candidate that beat the default rule's choice in the race is timed against it once
    more, the two alone, within the budget's last ``CONFIRM_SHARE``; it becomes the plan only
    if it wins those rounds too (a host stall that fell on the default's blocks in the race
    does not make a slower candidate the plan)."""
    _, _, _, _, p = _conv()
    default = _dispatch.available_backends("conv_forward")[0]
    other = next(c for c in _dispatch.candidates("conv_forward", p) if c != default and c.split(":")[0] != REF)
    budget = 0.4

    def scripted(race_won, again_won):
        seen = []

        def fake_time(calls, budget_s, rounds_out=None, **kw):
            seen.append((sorted(calls), budget_s))
            won = race_won if len(seen) == 1 else again_won
            rounds = {n: [0.5 if (n == other) == won else 1.0] * 5 for n in calls}
            if rounds_out is not None:
                rounds_out.update(rounds)
            return {n: r[0] for n, r in rounds.items()}

        monkeypatch.setattr(planner, "_time", fake_time)
        return seen

    seen = scripted(race_won=True, again_won=False)
    entry = planner.tune_key("conv_forward", p, budget_s=budget)
    assert entry["backend"] == default and "timed again" in entry["kept_default"] and "confirmed" not in entry
    assert len(seen) == 2 and other in seen[0][0] and len(seen[0][0]) > 2
    assert seen[1][0] == sorted([other, default])
    assert seen[0][1] == pytest.approx(budget * (1 - planner.CONFIRM_SHARE))
    assert seen[1][1] == pytest.approx(budget * planner.CONFIRM_SHARE)
    assert _dispatch.resolve_name("conv_forward", None, p) == default

    seen = scripted(race_won=True, again_won=True)
    entry = planner.tune_key("conv_forward", p, budget_s=budget)
    assert entry["backend"] == other and "kept_default" not in entry and "fresh paired rounds" in entry["confirmed"]
    assert len(seen) == 2 and _dispatch.resolve_name("conv_forward", None, p) == other
    assert "confirmed against the default" in planner.explain("conv_forward", p)

    seen = scripted(race_won=False, again_won=False)  # the default won the race: nothing to confirm
    assert planner.tune_key("conv_forward", p, budget_s=budget)["backend"] == default and len(seen) == 1
