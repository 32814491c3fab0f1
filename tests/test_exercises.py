"""The exercises of lessons/exercises/: every solution passes `npunet check`, every untouched exercise
fails with a message that says what to do, and typical mistakes are caught with the element, the
relative error and a hint."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from npunet import exercises as E

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXDIR = os.path.join(ROOT, "lessons", "exercises")
NAMES = list(E.EXERCISES)


def _file(name, solution=False):
    ex = E.EXERCISES[name]
    return os.path.join(EXDIR, "solutions", ex.file) if solution else os.path.join(EXDIR, ex.file)


def test_every_exercise_has_a_file_a_solution_and_the_promised_topics():
    files = sorted(f for f in os.listdir(EXDIR) if re.match(r"\d\d_.*\.py$", f))
    assert files == sorted(ex.file for ex in E.EXERCISES.values())
    assert len(files) == 9
    for name in NAMES:
        with open(_file(name)) as f:
            src = f.read()
        assert src.startswith("# %% [markdown]") and src.count("# %%") >= 4           # a percent-format notebook
        assert f'check("{name}", globals())' in src
        for fn in E.EXERCISES[name].functions:
            assert f"def {fn}(" in src
        assert os.path.isfile(_file(name, solution=True))


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(name, capsys):
    report = E.check(name, path=_file(name, solution=True))
    assert report.ok, str(report)
    assert len(report.findings) >= 2 * len(E.EXERCISES[name].cases)   # forward and backward, every case
    assert "all checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_untouched_exercise_fails_and_says_what_to_write(name, capsys):
    report = E.check(name, path=_file(name))
    assert not report.ok
    out = capsys.readouterr().out
    first = E.EXERCISES[name].functions[0]
    assert f"not written yet: {first}" in out
    assert "solutions/" in out                                             # where the teacher's answer is


def test_the_reference_gradients_equal_finite_differences_of_the_reference_forward():
    """What the checker calls "expected" is the gradient of the reference forward: central differences
    at random elements of every input, every case, every exercise."""
    rng = np.random.default_rng(0)
    for ex in E.EXERCISES.values():
        ref = ex.reference()
        for c, case in enumerate(ex.cases):
            seed = 1000 + c
            outs, state = ex.forward(ref, ex.make(np.random.default_rng(seed), **case), case)
            douts = E._random_douts(outs, np.random.default_rng(seed + 1))
            grads = ex.backward(ref, state, douts)
            inp = ex.make(np.random.default_rng(seed), **case)
            for gname, g in grads.items():
                key = E._grad_input(gname, inp)
                if key is None:
                    continue
                scale = np.abs(g).max()
                for i in rng.choice(g.size, size=min(4, g.size), replace=False):
                    fd = E._fd_agreement(ex, ref, case, seed, douts, key, int(i))
                    assert abs(fd - g.flat[i]) <= 1e-6 * scale, (ex.name, case, gname, i, fd, g.flat[i])


def _mutated(tmp_path, name, old, new):
    """The solution with one line changed: a typical student mistake."""
    with open(_file(name, solution=True)) as f:
        src = f.read()
    assert old in src, old
    path = tmp_path / f"{name}_mistake.py"
    path.write_text(src.replace(old, new))
    return str(path)


MISTAKES = [
    # (exercise, old, new, the gradient or output named, words the message must contain)
    ("maxpool", "dx[n, c, i * s + u, j * s + v] += ", "dx[n, c, i * s + u, j * s + v] = ", "backward dx",
     ["overlapping windows", "the backward is what needs fixing"]),
    ("unetpp_node", "return dx00_direct + dx00_via_x01,", "return dx00_direct,", "backward dx00",
     ["SUM of what both consumers send back"]),
    ("dice", "dL_dp = -dd_dp / I.size", "dL_dp = -dd_dp", "backward dlogits", ["exactly 2 x the expected"]),
    ("batchnorm", "dx = invstd[c] / M * (M * dxhat - dxhat.sum(axis=(0, 2, 3))[c] - xhat * (dxhat * xhat).sum(axis=(0, 2, 3))[c])",
     "dx = dxhat * invstd[c]", "backward dx", ["the mean and the variance depend on x"]),
    ("conv2d", "dw = (d @ cols.T).reshape(w.shape)", "dw = (d[:, :d.shape[1] // 2] @ cols[:, :d.shape[1] // 2].T).reshape(w.shape)",
     "backward dw", ["every image of the batch"]),
    ("crop_concat", "t, l = (Hs - H) // 2, (Ws - W) // 2", "t, l = 0, 0", "forward out", ["centre crop"]),
    ("bilinear", "src = max((i + 0.5) / scale - 0.5, 0.0)", "src = i / scale", "forward out", ["half-pixel", "src ="]),
    ("upconv", "dx += np.einsum", "dx = np.einsum", "backward dx", ["dx[n, c, i, j] = sum over o, u, v"]),
    ("unet3p_stage", "return d[:i], d[i:]", "return d[:i], d[i:][::-1]", "backward d_dec[0]", ["bilinear backward"]),
    ("unetpp_node", "return pieces[:-1], up.backward(pieces[-1])", "return pieces[1:], up.backward(pieces[0])",
     "backward dx10", ["the last block belongs to up(X^{1,0})"]),
]


@pytest.mark.parametrize("name,old,new,where,words", MISTAKES, ids=[f"{m[0]}-{m[3]}" for m in MISTAKES])
def test_a_typical_mistake_is_named_located_and_explained(tmp_path, capsys, name, old, new, where, words):
    report = E.check(name, path=_mutated(tmp_path, name, old, new))
    assert not report.ok
    bad = [f for f in report.findings if not f.ok]
    hit = [f for f in bad if f.name == where]
    assert hit, "\n".join(f"{f.name}: {f.message}" for f in bad)
    msg = hit[0].message
    if "shape" not in msg:
        assert re.search(r"relative error \S+ at \w+.*\[[\d, ]+\]: yours \S+, expected \S+", msg), msg
    assert "Hint:" in msg
    for w in words:
        assert w in msg, msg


def test_writing_into_dout_or_the_inputs_is_caught(tmp_path):
    p = _mutated(tmp_path, "crop_concat", "    Cs = skip_shape[1]\n", "    Cs = skip_shape[1]\n    dout *= 2.0\n")
    msgs = [f.message for f in E.check("crop_concat", path=p, verbose=False).findings if not f.ok]
    assert any("wrote into dout" in m for m in msgs), msgs
    p = _mutated(tmp_path, "bilinear", "    H, W = x.shape[2:]\n    My", "    H, W = x.shape[2:]\n    x *= 2.0\n    My")
    msgs = [f.message for f in E.check("bilinear", path=p, verbose=False).findings if not f.ok]
    assert any("wrote into its inputs" in m for m in msgs), msgs


def test_wrong_dtype_shape_and_return_form_are_reported(tmp_path):
    p = _mutated(tmp_path, "batchnorm", "return dx, dgamma, dbeta", "return dx.astype(np.float32), dgamma, dbeta")
    assert any("keep the input's dtype" in f.message for f in E.check("batchnorm", path=p, verbose=False).findings)
    p = _mutated(tmp_path, "batchnorm", "return dx, dgamma, dbeta", "return dx, dgamma")
    assert any("must return a tuple of 3" in f.message for f in E.check("batchnorm", path=p, verbose=False).findings)
    p = _mutated(tmp_path, "crop_concat", "return dskip, dout[:, Cs:].copy()", "return dskip, dout[:, Cs:, 1:]")
    assert any("has shape" in f.message for f in E.check("crop_concat", path=p, verbose=False).findings)
    p = _mutated(tmp_path, "maxpool", "u, v = np.divmod(arg[:, :, i, j], k)", "u, v = np.divmod(arg[:, :, i, j], kk)")
    msgs = [f.message for f in E.check("maxpool", path=p, verbose=False).findings]
    assert any("raised NameError" in m and "of maxpool_mistake.py" in m for m in msgs), msgs


def test_command_line_exit_status(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "npunet", "check", *a], capture_output=True, text=True,
                                    cwd=ROOT, timeout=300)
    ok = run("dice", "--solution")
    assert ok.returncode == 0 and "all checks passed" in ok.stdout, ok.stdout + ok.stderr
    todo = run("07")                                       # by number: the untouched exercise
    assert todo.returncode == 1 and "not written yet: dice_loss_forward" in todo.stdout
    unknown = run("softmax")
    assert unknown.returncode == 2 and "conv2d, maxpool" in unknown.stderr


def test_exercise_runs_as_a_notebook_and_checks_its_own_cells(tmp_path):
    """Opened as a notebook, the untouched exercise runs top to bottom (its check cell prints what is
    missing instead of raising); with the solution pasted into its code cell it passes."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(_file("crop_concat"))
    with open(_file("crop_concat", solution=True)) as f:
        solution = f.read()
    stub = [c for c in nb.cells if c.cell_type == "code" and "def crop_concat_forward" in c.source]
    assert len(stub) == 1
    for fill in (False, True):
        if fill:
            stub[0].source = solution
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": EXDIR}}).execute()
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
        shown = [o for o in outputs if o.get("output_type") == "execute_result"]
        assert len(shown) == 1 and "text/html" in shown[0]["data"]            # the report, displayed once
        assert "Finding(" not in text and "findings=" not in text             # not a dataclass dump
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert ("all checks passed" in text) == fill, text
        assert ("not written yet" in text) != fill, text
