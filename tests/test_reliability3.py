"""Reliability round 3: one process per run folder, nothing allocated blind, hostile checkpoints and
data answered in one line, no silent wrong answer in cv.  Command-line cases run real processes and
assert the exit code, the one-line message and that nothing the user had was lost or overwritten;
the memory-bound ones run under resource.setrlimit, so a regression fails instead of taking the
machine down."""
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from npunet import cv, io, models, nn
from npunet.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"n_train": 4, "n_val": 2, "size": 32, "batch_size": 2, "epochs": 1, "augment": {"elastic_p": 0.0},
        "model_config": {"base_channels": 2, "depth": 2}}
TINY_CV = {"n_train": 8, "n_val": 2, "size": 16, "batch_size": 2, "epochs": 1,
           "model_config": {"base_channels": 2, "depth": 2}}
GiB = 2 ** 30


def _limits(address_space=None, file_size=None):
    def set_limits():
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    return set_limits


def _vm_size():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def npunet(*args, cwd, headroom=2 * GiB, file_size=None):
    """``npunet args`` run in this process from ``cwd`` with its address space capped at ``headroom``
    above what it uses now (and the file-size limit ``file_size``): the soft limits are lowered for the
    call and restored after it.  Returns (exit code, stdout, stderr).  Run folders it locked are freed."""
    import contextlib
    import io as _io

    from npunet.cli import main
    out, err = _io.StringIO(), _io.StringIO()
    old_dir, old_as, old_fs = os.getcwd(), resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_FSIZE)
    code = 0
    try:
        os.chdir(cwd)
        resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + headroom, old_as[1]))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, old_fs[1]))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int) and e.code is not None:
            err.write(str(e.code) + "\n")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old_as)
        resource.setrlimit(resource.RLIMIT_FSIZE, old_fs)
        os.chdir(old_dir)
        io._unlock_all()
    return code, out.getvalue(), err.getvalue()


def one_line(err, *parts):
    """The error is one line (no traceback) and says every part."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and "%|" not in ln]  # not tqdm's bar
    assert len(lines) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-epoch run: (folder, checkpoint path, its bytes)."""
    d = tmp_path_factory.mktemp("r3")
    (d / "tiny.json").write_text(json.dumps(TINY))
    code, _, err = npunet("train", "--config", "tiny.json", "--out", "run", cwd=d)
    assert code == 0, err
    ck = d / "run" / "checkpoint.npz"
    return d, ck, ck.read_bytes()


def _loads(ck):
    from npunet.train import load_model
    model, meta = load_model(str(ck))
    return meta["epoch"]


# ---------------------------------------------------------------- 1. one owner per run folder

def test_two_train_processes_into_one_folder(tmp_path):
    (tmp_path / "long.json").write_text(json.dumps(dict(TINY, epochs=100000)))
    (tmp_path / "short.json").write_text(json.dumps(TINY))
    env = dict(os.environ, PYTHONPATH=ROOT)
    first = subprocess.Popen([sys.executable, "-m", "npunet", "train", "--config", "long.json", "--out", "run"],
                             cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=_limits(3 * GiB))
    try:
        ck = tmp_path / "run" / "checkpoint.npz"
        for _ in range(1200):  # until the first process owns the folder and has saved an epoch
            if ck.exists():
                break
            time.sleep(0.05)
        assert (tmp_path / "run" / io.LOCK_NAME).read_text().startswith(f"pid {first.pid}")
        for extra in (["--force"], ["--resume"], []):  # nothing overrides a live owner, not even --force
            code, _, err = npunet("train", "--config", "short.json", "--out", "run", *extra, cwd=tmp_path)
            assert code == 1
            one_line(err, "'run' is in use by another npunet process", f"pid {first.pid}", "--force does not override")
        assert first.poll() is None  # still training, undisturbed
    finally:
        first.kill()
        first.wait()
    from npunet.train import read_checkpoint
    _, meta = read_checkpoint(str(ck))
    assert meta["config"]["epochs"] == 100000 and meta["epoch"] >= 1  # the first run's, not overwritten


@pytest.mark.slow
def test_two_train_processes_started_together(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(dict(TINY, epochs=2)))
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-m", "npunet", "train", "--config", "c.json", "--out", "run",
                               "--force"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, preexec_fn=_limits(3 * GiB)) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        assert "Traceback" not in err and "FileNotFoundError" not in err
        if code:
            one_line(err, "is in use by another npunet process")
    assert _loads(tmp_path / "run" / "checkpoint.npz") == 2


def test_cv_folder_has_one_owner_and_a_stale_lock_is_taken_over(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(TINY_CV))
    env = dict(os.environ, PYTHONPATH=ROOT)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, time; os.mkdir('search'); "
                               "f = open('search/.npunet.lock', 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
                               "f.write(f'pid {os.getpid()}, started 0'); f.flush(); print('locked', flush=True); "
                               "time.sleep(60)"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = npunet("cv", "--config", "c.json", "--folds", "2", "--out", "search", "--quiet", cwd=tmp_path)
        assert code == 1
        one_line(err, "cv folder 'search' is in use by another npunet process", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    # the holder died with the lock file still naming it: the next owner takes over, with a note
    assert (tmp_path / "search" / io.LOCK_NAME).read_text().startswith(f"pid {holder.pid}")
    (tmp_path / "t.json").write_text(json.dumps(TINY))
    code, out, err = npunet("train", "--config", "t.json", "--out", "search", cwd=tmp_path)
    assert code == 0, err
    assert f"taking over 'search' from a process that is no longer running (pid {holder.pid}" in err


def test_temp_files_of_live_writers_are_kept(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        live = tmp_path / f".x.npz.tmp-{sleeper.pid}-{io.process_start(sleeper.pid)}-abc"
        reused = tmp_path / f".x.npz.tmp-{sleeper.pid}-{io.process_start(sleeper.pid) + 1}-abc"  # a reused pid
        dead = tmp_path / ".x.npz.tmp-999999999-1-abc"
        old_style = tmp_path / ".x.npz.tmp-abcdef"
        for f in (live, reused, dead, old_style):
            f.write_bytes(b"partial")
        io.save_npz(tmp_path / "x.npz", {"a": np.zeros(2)})
        assert live.exists()  # another process is writing it
        assert not reused.exists() and not dead.exists() and not old_style.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------- 2. cv: no silent wrong answer

def _cv(tmp_path, out="search", **kw):
    return cv.cross_validate(TINY_CV, folds=2, out=str(tmp_path / out), progress=False, log=None, **kw)


def test_cv_retrains_the_final_model_when_its_setting_changed(tmp_path):
    grid = {"lr": [1e-3, 5e-3]}
    r = _cv(tmp_path, grid=grid)
    assert r["test_setting"]["index"] == r["best"]["index"]
    final = tmp_path / "search" / "final"
    other = 3 - r["best"]["index"]  # pretend the final model was trained for the other setting
    chosen = json.loads((final / "setting.json").read_text())
    chosen.update(index=other, setting={"lr": grid["lr"][other - 1]})
    (final / "setting.json").write_text(json.dumps(chosen))
    stamp = (final / "checkpoint.npz").stat().st_mtime_ns
    logs = []
    r2 = cv.cross_validate(TINY_CV, folds=2, grid=grid, out=str(tmp_path / "search"), progress=False, log=logs.append)
    assert any("was trained for another setting; retraining it" in m for m in logs)
    assert (final / "checkpoint.npz").stat().st_mtime_ns != stamp
    from npunet.train import read_checkpoint
    _, meta = read_checkpoint(str(final / "checkpoint.npz"))
    assert meta["config"]["lr"] == grid["lr"][r2["best"]["index"] - 1]  # the model evaluated is the best's
    assert any(f"with setting {r2['best']['index']}" in m for m in logs)  # the report names it
    plan = json.loads((tmp_path / "search" / "cv_plan.json").read_text())
    assert plan["select"] == "dice" and plan["test_fraction"] == 0.2 and plan["grid"] == grid


def test_cv_refuses_a_selector_that_is_nan(tmp_path):
    from npunet.data import make_cells
    x, lab, m = make_cells(12, 32, seed=0)
    np.savez(tmp_path / "nolabels.npz", images=x, masks=m)
    cfg = dict(TINY_CV, data=str(tmp_path / "nolabels.npz"), n_val=2)
    with pytest.raises(ConfigError, match="select: 'instance_f1' needs instance labels.*every value would be NaN"):
        cv.cross_validate(cfg, folds=2, select="instance_f1", out=str(tmp_path / "s"), progress=False, log=None)
    assert not (tmp_path / "s").exists()  # refused before anything was written
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    code, _, err = npunet("cv", "--config", "c.json", "--select", "instance_f1", "--out", "s2", cwd=tmp_path)
    assert code == 1
    one_line(err, "needs instance labels")


def test_cv_refuses_a_key_given_twice_in_the_grid(tmp_path):
    with pytest.raises(ConfigError, match=r"--grid 'lr=1e-3' and --grid 'lr=2e-3' name the same key"):
        cv.parse_grid(["lr=1e-3", "lr=2e-3"])
    with pytest.raises(ConfigError, match=r"grid keys 'base_channels' and 'model_config.base_channels' name the same"):
        _cv(tmp_path, grid={"base_channels": [2], "model_config.base_channels": [3]})
    (tmp_path / "c.json").write_text(json.dumps(TINY_CV))
    code, _, err = npunet("cv", "--config", "c.json", "--grid", "elastic_p=0", "--grid", "augment.elastic_p=0.5",
                          "--out", "s", cwd=tmp_path)
    assert code == 1
    one_line(err, "'elastic_p' and 'augment.elastic_p' name the same config key")
    assert not (tmp_path / "s").exists()


def test_cv_never_writes_into_a_folder_that_holds_no_search(tmp_path):
    for name in ("cv_results.csv", "notes.txt"):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_text("the user's own file")
        with pytest.raises(ConfigError, match="is not empty and holds no search"):
            _cv(tmp_path, out=folder.name)
        assert [p.name for p in folder.iterdir()] == [name] and (folder / name).read_text() == "the user's own file"


def test_cv_validates_every_setting_before_writing(tmp_path):
    for bad in ({"base_channels": [2, 0]}, {"depth": [2, 99]}):
        with pytest.raises(ConfigError, match="grid setting"):
            _cv(tmp_path, grid=bad)
        assert not (tmp_path / "search").exists()  # no plan, no fold of setting 1 trained
    ok = cv.settings(cv.C.merge(TINY_CV), {"base_channels": [2, 3]})  # the corrected grid is accepted
    assert [c["model_config"]["base_channels"] for _, c in ok] == [2, 3]


@pytest.mark.slow
def test_cv_folder_moved_is_the_same_search_and_corrupt_files_are_named(tmp_path):
    _cv(tmp_path)
    os.rename(tmp_path / "search", tmp_path / "moved")
    stamp = (tmp_path / "moved" / "setting1" / "fold1" / "result.json").stat().st_mtime_ns
    _cv(tmp_path, out="moved")  # resumes: nothing trained again
    assert (tmp_path / "moved" / "setting1" / "fold1" / "result.json").stat().st_mtime_ns == stamp
    (tmp_path / "moved" / "setting1" / "fold2" / "result.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"fold result '.*fold2/result.json': not valid JSON"):
        _cv(tmp_path, out="moved")
    (tmp_path / "moved" / "cv_plan.json").write_text('{"split": 1, "split": 2}')
    with pytest.raises(ConfigError, match=r"search plan '.*cv_plan.json': the key 'split' is given twice"):
        _cv(tmp_path, out="moved")


# ---------------------------------------------------------------- 3. memory: estimated before allocating

@pytest.mark.parametrize("args,expect", [
    (["--depth", "100"], "too large to exist"),
    (["--same", "--base", "100000", "--size", "64"], "75,740,011,800,002"),  # shapes only: printed, not built
    (["--same", "--depth", "12", "--size", "8192"], "208.2 GiB"),
])
def test_summary_never_allocates_weights(tmp_path, args, expect):
    code, out, err = npunet("summary", *args, cwd=tmp_path, headroom=GiB)
    assert expect in out + err
    assert code == (1 if "too large" in expect else 0)
    if code:
        one_line(err, "npunet summary:")


@pytest.mark.parametrize("cfg,expect", [
    ({"model_config": {"base_channels": 4096}}, "this config needs about"),
    ({"size": 8000, "n_train": 1000}, "this config needs about"),
    ({"model_config": {"base_channels": 100000}}, "'model_config.base_channels': 100000 is above the limit 4096"),
    ({"size": 1000000}, "config key 'size': expected integer in [16, 8192], got 1000000"),
])
def test_train_refuses_what_cannot_fit_before_allocating(tmp_path, cfg, expect):
    (tmp_path / "c.json").write_text(json.dumps(dict(cfg, epochs=1)))
    t0 = time.perf_counter()
    code, _, err = npunet("train", "--config", "c.json", "--out", "run", cwd=tmp_path)
    assert code == 1 and time.perf_counter() - t0 < 60
    line = one_line(err, expect)
    if "needs about" in expect:
        assert "of memory is available" in line
    assert not (tmp_path / "run").exists()


def _bomb(path, declared, real_bytes=None):
    """An .npz whose member 'images' declares ``declared`` uint8 values: deflated zeros (a real zip bomb)
    or, with real_bytes, a header that promises more than the member holds."""
    import zipfile
    header = io_bytes_header(declared)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as f:
            f.write(header)
            left = declared if real_bytes is None else real_bytes
            chunk = bytes(2 ** 22)
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
        buf = __import__("io").BytesIO()
        np.save(buf, np.zeros((1, 2, 2), np.uint8))
        zf.writestr("masks.npy", buf.getvalue())


def io_bytes_header(n):
    import io as _io
    b = _io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "|u1", "fortran_order": False, "shape": (n,)})
    return b.getvalue()


def test_npz_headers_are_read_before_inflating(tmp_path):
    _bomb(tmp_path / "bomb.npz", 200 * 2 ** 20)  # 200 MiB of zeros in a 0.2 MB file
    _bomb(tmp_path / "liar.npz", 2 ** 40, real_bytes=16)  # a header promising 1 TiB
    assert (tmp_path / "bomb.npz").stat().st_size < 4 * 2 ** 20
    for name, expect in (("bomb.npz", "memory available; refusing to load it"), ("liar.npz", "the file is corrupt")):
        (tmp_path / "c.json").write_text(json.dumps({"data": name, "epochs": 1}))
        code, _, err = npunet("train", "--config", "c.json", "--out", "run", cwd=tmp_path, headroom=GiB // 8)
        assert code == 1
        one_line(err, name, expect)
    with pytest.raises(io.InputError, match="declares .* but holds"):
        io.load_npz(tmp_path / "liar.npz")


# ---------------------------------------------------------------- 4. weights checked after the cast

def test_weights_that_overflow_the_model_dtype_are_refused():
    m = nn.Conv2d(1, 2, 3)
    for bad in (1e300, -1e39):
        sd = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
        sd["weight"][0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"'weight' contains 1 overflow\(s\) in the model's float32"):
            m.load_state_dict(sd)
    assert np.isfinite(m.weight.data).all()
    for bad in ([1, 2, 3], None, "weights.npz"):
        with pytest.raises(TypeError, match=r"Conv2d.load_state_dict: expected a dict of name -> array"):
            m.load_state_dict(bad)


def test_module_load_of_a_training_checkpoint_says_what_to_use(run_dir):
    d, ck, _ = run_dir
    with pytest.raises(ValueError, match=r"is a training checkpoint .* npunet.train.load_model\(path\) or npunet predict"):
        models.UNet(1, 2, base_channels=2, depth=2, padding="same").load(str(ck))


# ---------------------------------------------------------------- 5. input modified between forward and backward

@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(2, 3, 3, padding=1), lambda: nn.ConvTranspose2d(2, 3, 2, stride=2), lambda: nn.BatchNorm2d(2),
])
def test_input_modified_before_backward_is_detected(make, rng):
    layer = make()
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    y = layer(x)
    x[1, 0, 3, 2] += 0.5  # one element, in place
    with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}: input 0 \(2, 2, 6, 6\) was modified in place"):
        layer.backward(np.ones_like(y))


def test_input_modified_inside_a_model_names_the_layer(rng):
    m = models.UNet(1, 2, base_channels=2, depth=2, padding="same")
    x = rng.standard_normal((1, 1, 16, 16)).astype(np.float32)
    y = m(x)
    x *= 2
    with pytest.raises(RuntimeError, match=r"Conv2d\('down1.*was modified in place between forward and backward"):
        m.backward(np.ones_like(y))
    y = m(x.copy())  # unmodified: backward works
    m.backward(np.ones_like(y))


# ---------------------------------------------------------------- 6. JSON keys given twice

@pytest.mark.parametrize("text,key", [('{"lr": 1e-3, "lr": 5}', "lr"),
                                      ('{"model_config": {"depth": 2, "depth": 3}}', "depth")])
def test_json_config_with_a_key_twice(tmp_path, text, key):
    (tmp_path / "c.json").write_text(text)
    for cmd in ("train", "cv"):
        code, _, err = npunet(cmd, "--config", "c.json", "--out", "run", cwd=tmp_path)
        assert code == 1
        one_line(err, f"config 'c.json': the key '{key}' is given twice")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 7. checkpoint metadata validated on load

def _with_meta(src, dst, change):
    d = dict(np.load(src))
    meta = json.loads(str(d["meta"]))
    new = change(meta)
    d["meta"] = np.array(new if isinstance(new, str) else json.dumps(new))
    np.savez(dst, **d)


META_CASES = [
    (lambda m: dict(m, dtype="int8"), "metadata 'dtype': expected 'float32' or 'float64', got 'int8'"),
    (lambda m: dict(m, input_range=[float("nan"), 1]), "metadata 'input_range': expected [low, high]"),
    (lambda m: dict(m, input_range="0..1"), "metadata 'input_range'"),
    (lambda m: [m], "metadata: expected a JSON object, got a list"),
    (lambda m: dict(m, model_config=dict(m["model_config"], width=3)), "unknown UNet argument(s) 'width'"),
    (lambda m: dict(m, model_config={k: v for k, v in m["model_config"].items() if k != "depth"}),
     "missing UNet argument(s) 'depth'"),
    (lambda m: {k: v for k, v in m.items() if k != "architecture"}, "metadata 'architecture': expected one of"),
    (lambda m: dict(m, model_config=dict(m["model_config"], base_channels=100000)), "100000 is above the limit"),
    (lambda m: dict(m, model_config=dict(m["model_config"], base_channels=3000, depth=9)), "parameters"),
    (lambda m: "{broken", "metadata: not valid JSON"),
]


@pytest.mark.parametrize("change,expect", META_CASES)
def test_hostile_checkpoint_metadata_is_one_line(run_dir, tmp_path, change, expect):
    d, ck, raw = run_dir
    _with_meta(ck, tmp_path / "bad.npz", change)
    np.save(tmp_path / "img.npy", np.random.default_rng(0).random((32, 32)))
    code, _, err = npunet("predict", "--checkpoint", "bad.npz", "--input", "img.npy", "--out", "m.png",
                          cwd=tmp_path)
    assert code == 1 and not (tmp_path / "m.png").exists()
    one_line(err, "checkpoint 'bad.npz'", expect)
    (tmp_path / "run").mkdir()
    os.replace(tmp_path / "bad.npz", tmp_path / "run" / "checkpoint.npz")
    (tmp_path / "c.json").write_text(json.dumps(TINY))
    code, _, err = npunet("train", "--config", "c.json", "--out", "run", "--resume", cwd=tmp_path)
    assert code == 1
    line = one_line(err, "checkpoint.npz")
    assert expect in line or "holds a UNet with" in line  # (the run's config and the checkpoint disagree)
    assert "config key 'model_config'" not in line


@pytest.mark.parametrize("make,expect", [
    (lambda p: __import__("safetensors.numpy").numpy.save_file({"a": np.zeros(2, np.float32)}, p), "a .safetensors file"),
    (lambda p: open(p, "w").write("not a checkpoint"), "a text file"),
    (lambda p: (os.symlink(p + "2", p), os.symlink(p, p + "2")), "a symlink loop"),
    (lambda p: os.mkdir(p), "is a folder"),
])
def test_wrong_files_given_as_checkpoint_or_data(run_dir, tmp_path, make, expect):
    make(str(tmp_path / "thing.NPZ"))
    np.save(tmp_path / "img.npy", np.zeros((32, 32)))
    code, _, err = npunet("predict", "--checkpoint", "thing.NPZ", "--input", "img.npy", "--out", "m.png", cwd=tmp_path)
    assert code == 1
    one_line(err, "thing.NPZ", expect)
    (tmp_path / "c.json").write_text(json.dumps(dict(TINY, data="thing.NPZ")))
    code, _, err = npunet("train", "--config", "c.json", "--out", "run", cwd=tmp_path)
    assert code == 1
    one_line(err, "config key 'data'", "thing.NPZ", expect)
    assert "allow_pickle" not in err and "No such file" not in err


def test_upper_case_checkpoint_name_is_read_by_content(run_dir, tmp_path):
    d, ck, raw = run_dir
    (tmp_path / "CK.NPZ").write_bytes(raw)
    np.save(tmp_path / "img.npy", np.random.default_rng(0).random((32, 32)))
    code, out, err = npunet("predict", "--checkpoint", "CK.NPZ", "--input", "img.npy", "--out", "pred", cwd=tmp_path)
    assert code == 0 and (tmp_path / "pred" / "img.png").exists(), err


# ---------------------------------------------------------------- 8. paths checked before any work

def test_out_paths_are_checked_before_work(run_dir, tmp_path):
    d, ck, raw = run_dir
    (tmp_path / "afile").write_text("the user's file")
    (tmp_path / "c.json").write_text(json.dumps(TINY))
    for cmd in ("train", "cv"):
        for out, expect in (("afile", "'afile' is a file, not a folder"), ("afile/sub", "which is a file")):
            code, _, err = npunet(cmd, "--config", "c.json", "--out", out, cwd=tmp_path)
            assert code == 1
            one_line(err, f"npunet {cmd}: --out", expect)
    assert (tmp_path / "afile").read_text() == "the user's file"
    img = np.random.default_rng(0).random((32, 32))
    np.save(tmp_path / "img.npy", img)
    (tmp_path / "ck.npz").write_bytes(raw)
    from PIL import Image
    Image.fromarray((img * 255).astype(np.uint8)).save(tmp_path / "img.png")
    png = (tmp_path / "img.png").read_bytes()
    for inp, out, expect in (("img.npy", "afile", "'afile' is a file, not a folder"),
                             ("img.npy", "afile/sub", "which is a file"),
                             ("img.npy", "m.png", "is the folder the masks are written to"),
                             ("img.npy", "/proc/pred", "cannot write"),
                             ("img.png", ".", "would replace the input")):
        code, _, err = npunet("predict", "--checkpoint", "ck.npz", "--input", inp, "--out", out, "--force", cwd=tmp_path)
        assert code == 1
        one_line(err, "npunet predict: --out", expect)
    assert (tmp_path / "img.png").read_bytes() == png                # the inputs are unchanged
    assert (tmp_path / "afile").read_text() == "the user's file"
    assert np.array_equal(np.load(tmp_path / "img.npy"), img)  # the input is unchanged


def test_bad_npy_inputs(run_dir, tmp_path):
    d, ck, raw = run_dir
    (tmp_path / "ck.npz").write_bytes(raw)
    np.savez(tmp_path / "renamed.npy", a=np.zeros((4, 4)))
    os.replace(tmp_path / "renamed.npy.npz", tmp_path / "renamed.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "dir.npy").mkdir()
    for name, expect in (("renamed.npy", "is named .npy but is an .npz archive"), ("empty.npy", "is empty"),
                         ("dir.npy", "no image files in the folder"), ("missing.npy", "no such file or folder")):
        code, _, err = npunet("predict", "--checkpoint", "ck.npz", "--input", name, "--out", "pred", cwd=tmp_path)
        assert code == 1
        one_line(err, name, expect)


# ---------------------------------------------------------------- 9. the small ones

@pytest.mark.parametrize("args,expect", [
    (["summary", "--size", "0"], "--size must be >= 1, got 0"), (["summary", "--base", "0"], "--base must be >= 1"),
    (["demo", "--epochs", "0"], "--epochs must be >= 1, got 0"), (["demo", "--n-train", "0"], "--n-train must be >= 1"),
])
def test_zero_sizes_are_refused(tmp_path, args, expect):
    (tmp_path / "npunet_demo_out").mkdir()
    (tmp_path / "npunet_demo_out" / "checkpoint.npz").write_bytes(b"an old run")
    code, out, err = npunet(*args, cwd=tmp_path)
    assert code == 1 and "checkpoint" not in out
    one_line(err, expect)
    assert (tmp_path / "npunet_demo_out" / "checkpoint.npz").read_bytes() == b"an old run"


def test_valid_padding_too_small_for_the_images(tmp_path):
    for size, depth in ((16, 3), (32, 4)):
        (tmp_path / "c.json").write_text(json.dumps({"size": size, "epochs": 1, "model_config": {
            "padding": "valid", "depth": depth}}))
        code, _, err = npunet("train", "--config", "c.json", "--out", "run", cwd=tmp_path)
        assert code == 1
        one_line(err, f"images 1x{size}x{size}", "does not tile", "nearest")


def test_images_near_the_float64_limit_are_rescaled(run_dir, tmp_path):
    d, ck, raw = run_dir
    (tmp_path / "ck.npz").write_bytes(raw)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "tiny.npy", rng.random((32, 32)) * 1e-300)
    code, out, err = npunet("predict", "--checkpoint", "ck.npz", "--input", "tiny.npy", "--out", "pred", cwd=tmp_path)
    assert code == 0, err
    np.save(tmp_path / "big.npy", rng.uniform(-1, 1, (32, 32)) * 1.7e308)   # finite, but beyond float32
    code, out, err = npunet("predict", "--checkpoint", "ck.npz", "--input", "big.npy", "--out", "pred", cwd=tmp_path)
    assert code == 1
    one_line(err, "big.npy", "do not fit float32")
    assert "NaN/Inf" not in err
    from npunet.data.inference import fit_range
    r = fit_range(np.array([1.7e308, -1.7e308, 0.0]), 0.0, 1.0)
    assert np.allclose(r, [1.0, 0.0, 0.5])


def test_disk_full_keeps_the_old_checkpoint(run_dir, tmp_path):
    d, ck, raw = run_dir
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.npz").write_bytes(raw)
    (tmp_path / "c.json").write_text(json.dumps(TINY))
    for limit in (4096, len(raw) // 2):  # the file-size limit (ulimit -f) makes every save fail like a full disk
        code, _, err = npunet("train", "--config", "c.json", "--out", "run", "--resume", "--epochs", "2", cwd=tmp_path,
                              file_size=limit)
        assert code == 1
        one_line(err, "cannot write", "checkpoint.npz", "File too large", "the previous file is intact", "--resume")
        assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == raw
        assert [p.name for p in (tmp_path / "run").iterdir() if ".tmp-" in p.name] == []
    code, out, err = npunet("train", "--config", "c.json", "--out", "run", "--resume", "--epochs", "2", cwd=tmp_path)
    assert code == 0 and "resumed from" in out and _loads(tmp_path / "run" / "checkpoint.npz") == 2
