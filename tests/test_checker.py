"""The checker cannot hang or be fooled, and its hints name the actual mistake: the student's code runs
in a forked process with a time limit and a memory cap; exits, interrupts, crashes and patches of npunet
are failures with the student's line."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from npunet.teach import checker as C

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SOL = os.path.join(ROOT, "lessons", "exercises", "solutions")
CONV = os.path.join(SOL, "01_conv2d.py")
BACK = "    return dx, dw, db\n"


def _attempt(tmp_path, body_before_return="", tail="", name="attempt.py", src=CONV, anchor=BACK):
    with open(src) as f:
        s = f.read()
    assert anchor in s
    p = tmp_path / name
    p.write_text(s.replace(anchor, body_before_return + anchor) + tail)
    return str(p)


def _bad(report):
    assert not report.ok, str(report)
    return [f.message for f in report.findings if not f.ok]


def test_an_endless_loop_ends_with_the_students_line(tmp_path):
    p = _attempt(tmp_path, "    while True:\n        pass\n")
    msgs = _bad(C.check("conv2d", path=p, verbose=False, timeout=1.5))
    assert re.search(r"your conv2d_backward did not return within 1\.5 s \(line \d+ of attempt\.py: while True:\)",
                     msgs[0]), msgs


def test_the_command_line_times_out_with_exit_status_1(tmp_path):
    p = _attempt(tmp_path, "    while True:\n        pass\n", name="my_conv.py")
    r = subprocess.run([sys.executable, "-m", "npunet", "check", "conv2d", p, "--timeout", "1"], capture_output=True,
                       text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "did not return within 1 s" in r.stdout and "while True:" in r.stdout


def test_a_huge_allocation_hits_the_memory_cap_at_the_students_line(tmp_path, monkeypatch):
    p = _attempt(tmp_path, "    big = np.ones((1 << 38,))\n")
    msgs = _bad(C.check("conv2d", path=p, verbose=False))
    assert "asked for more memory than the check allows" in msgs[0] and "big = np.ones((1 << 38,))" in msgs[0], msgs
    monkeypatch.setattr(C, "MEMORY", 200 << 20)                 # inherited by the forked child
    p = _attempt(tmp_path, "    keep = []\n    while True:\n        keep.append(np.ones(1 << 22))\n", name="grow.py")
    msgs = _bad(C.check("conv2d", path=p, verbose=False))
    assert "more memory than the check allows" in msgs[0] and "keep.append(np.ones(1 << 22))" in msgs[0], msgs


CHEATS = {
    "sys.exit after printing": ("    dx = dx * 2\n", "\nprint('all checks passed')\nimport sys\nsys.exit(0)\n",
                                "called sys.exit(0) (line"),
    "os._exit in the backward": ("    print('all checks passed'); import os; os._exit(0)\n", "",
                                 "tried to end the process (os._exit(0)) (line"),
    "KeyboardInterrupt": ("    raise KeyboardInterrupt\n", "", "interrupted (KeyboardInterrupt) (line"),
    "a dead process": ("    import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n", "", "killed by SIGKILL"),
    "patching npunet and the checker": (
        "    dx = dx * 2\n",
        "\nimport npunet.backends.reference as R\nR.conv2d_backward = conv2d_backward\n"
        "import npunet.exercises as E\nE.TOL = 1e9\nE.Report.ok = property(lambda self: True)\n"
        "E._compare = lambda *a, **k: True\n", "exactly 2 x the expected"),
    "an ndarray subclass that lies": (
        "    class Liar(np.ndarray):\n        def __sub__(self, o):\n            return np.zeros(self.shape)\n"
        "        __rsub__ = __sub__\n    dx = (dx * 2).view(Liar)\n", "", "exactly 2 x the expected"),
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_nothing_in_the_students_file_changes_the_verdict(tmp_path, cheat):
    before, tail, words = CHEATS[cheat]
    p = _attempt(tmp_path, before, tail)
    report = C.check("conv2d", path=p, verbose=False, timeout=10)
    assert any(words in m for m in _bad(report)), str(report)
    assert C.TOL == 1e-6 and C.Report.ok is not None and callable(C._compare)        # this process untouched


def test_a_numpy_error_is_reported_at_the_students_line(tmp_path):
    p = _attempt(tmp_path, "    dx = np.lib.stride_tricks.as_strided(dx, shape=(2, 3), strides=(8,))\n")
    msgs = _bad(C.check("conv2d", path=p, verbose=False))
    assert re.search(r"raised ValueError: .* \(line \d+ of attempt\.py: dx = np\.lib\.stride_tricks", msgs[0]), msgs
    assert "_stride_tricks_impl" not in msgs[0]


def _mutated(tmp_path, file, old, new):
    with open(os.path.join(SOL, file)) as f:
        src = f.read()
    assert old in src, old
    p = tmp_path / "mistake.py"
    p.write_text(src.replace(old, new))
    return str(p)


HINTS = [
    # (exercise, file, old, new, words that must appear in the report: the actual mistake)
    ("conv2d", "01_conv2d.py", "return dx, dw, db", "return dx, dw.transpose(0, 1, 3, 2), db",
     ["last two axes swapped"]),
    ("conv2d", "01_conv2d.py", "dw = (d @ cols.T).reshape(w.shape)",
     "dw = (d[:, :d.shape[1] // 2] @ cols[:, :d.shape[1] // 2].T).reshape(w.shape)",
     ["image 0's contribution alone"]),
    ("conv2d", "01_conv2d.py", "return dx, dw, db", "return dx, dw, -db", ["the sign is flipped"]),
    ("dice", "07_dice.py", "dL_dp = -dd_dp / I.size", "dL_dp = dd_dp / I.size", ["the sign is flipped"]),
    ("dice", "07_dice.py", "dL_dp = -dd_dp / I.size", "dL_dp = -dd_dp", ["exactly 2 x the expected"]),
    ("crop_concat", "06_crop_concat.py", "t, l = (Hs - H) // 2, (Ws - W) // 2", "t, l = (Hs - H) // 2, (Ws - W) // 2 + 1",
     ["shifted by one along the columns"]),
    ("bilinear", "04_bilinear.py", "src = max((i + 0.5) / scale - 0.5, 0.0)", "src = (i + 0.5) / scale - 0.5",
     ["only the border rows/columns are wrong"]),
    ("bilinear", "04_bilinear.py", "if align_corners:", "if False:",
     ["fails only in the cases with", "align_corners=True"]),
    ("maxpool", "02_maxpool.py", "dx[n, c, i * s + u, j * s + v] += dout[:, :, i, j]", "pass", ["all zeros"]),
    ("maxpool", "02_maxpool.py", "dx[n, c, i * s + u, j * s + v] += ", "dx[n, c, i * s + u, j * s + v] = ",
     ["values are wrong (the first at", "fails only in the cases with", "k=3"]),
    ("upconv", "03_upconv.py", "dx += np.einsum", "dx = np.einsum", ["the backward is what needs fixing"]),
    ("unetpp_node", "08_unetpp_node.py", "return dx00_direct + dx00_via_x01,", "return dx00_direct,",
     ["SUM of what both consumers send back"]),
]


@pytest.mark.parametrize("name,file,old,new,words", HINTS, ids=[f"{h[0]}-{i}" for i, h in enumerate(HINTS)])
def test_the_hint_names_the_actual_mistake(tmp_path, name, file, old, new, words):
    report = C.check(name, path=_mutated(tmp_path, file, old, new), verbose=False)
    text = str(report)
    assert not report.ok
    for w in words:
        assert w in text, text
    assert not re.search(r"(?<![\w.])-0(?![.\d])", text), text                     # never "-0"


def test_a_gradient_zero_in_exact_arithmetic_is_compared_with_a_floor():
    """A conv bias before a training-mode BatchNorm: rounding noise is not a finding, a real value is."""
    rng = np.random.default_rng(0)
    want = 1e-15 * rng.standard_normal(4)
    for got, ok in ((6e-15 * rng.standard_normal(4), True), (1e-3 * rng.standard_normal(4), False)):
        r = C.Report("x", "x", "x")
        C._compare(r, "backward b", "b", C.describe(got), want, "h", {}, floor=C.FLOOR * 10.0)
        assert r.findings[-1].ok == ok, r.findings[-1].message


def test_numbers_never_print_minus_zero():
    assert C.num(-0.0) == "0" and C.num(-1e-320) in ("0", "-9.99989e-321") and C.num(-2.5) == "-2.5"
    assert C.num(np.float64(-0.0)) == "0"


def test_the_report_shows_itself_in_a_notebook_not_as_a_dataclass_dump():
    r = C.check("dice", path=os.path.join(SOL, "07_dice.py"), verbose=False)
    assert r.ok and "all checks passed" in r._repr_markdown_() and r._repr_html_().startswith("<pre>")
    assert len(repr(r)) < 80 and "Finding(" not in repr(r)


def test_check_accepts_any_file_name_and_infers_from_an_exercise_name(tmp_path, capsys):
    p = tmp_path / "my_attempt.py"
    p.write_text(open(os.path.join(SOL, "06_crop_concat.py")).read())
    assert C.main("crop_concat", str(p)) == 0                        # named exercise, any file name
    assert C.main(str(p)) == 2                                       # the name says nothing: asks for it
    assert "npunet check conv2d" in capsys.readouterr().err
    q = tmp_path / "06_crop_concat.py"
    q.write_text(p.read_text())
    assert C.main(str(q)) == 0                                       # inferred from the file's name
