"""Optimisers and schedules with PyTorch's rules, groups and state_dict.  The recorded numbers were
computed once with torch 2.13 (torch.optim, float64) for the same inputs; npunet's own trajectories
equal PyTorch's to float64 rounding (a private comparison over 60 steps, every option)."""
import math
import os

import numpy as np
import pytest

from npunet import optim
from npunet.nn import Parameter

OLD = os.path.join(os.path.dirname(__file__), "fixtures", "old_checkpoints")


def _run(opt_cls, steps=5, **kw):
    p = Parameter(np.array([0.5, -1.5, 2.0]))
    opt = opt_cls([p], **kw)
    for t in range(steps):
        p.grad = np.cos(3 * p.data) + 0.1 * t
        opt.step()
    return p.data


@pytest.mark.parametrize("cls,kw,expected", [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2, maximize=True, weight_decay=0.05),
     [0.6402429404764298, -1.4651376729806782, 2.934414996232376]),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True), [-0.14890296148171842, -1.104718095962616, 1.314864285806985]),
    ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.1),
     [0.2639970293093939, -1.2490442707570584, 1.7496757458778802]),
    ("AdamW", dict(lr=0.05, weight_decay=0.2, betas=(0.8, 0.99)),
     [0.23921929418379634, -1.1774188312737703, 1.6578980090617144]),
])
def test_trajectories_equal_recorded_pytorch(cls, kw, expected):
    np.testing.assert_allclose(_run(getattr(optim, cls), **kw), expected, rtol=1e-14, atol=0)


def test_adamw_by_hand():
    """Decoupled decay: p *= 1 - lr wd, then the Adam step (Loshchilov & Hutter 2019, Algorithm 2)."""
    p = Parameter(np.array([1.0, -2.0]))
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5, amsgrad=True)
    w, m, v, vmax = p.data.copy(), 0.0, 0.0, 0.0
    for t in range(1, 5):
        g = np.array([0.3, -0.2]) * (-1) ** t
        p.grad = g.copy()
        w = w * (1 - 0.1 * 0.5)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        vmax = np.maximum(vmax, v)
        w = w - 0.1 / (1 - 0.9 ** t) * m / (np.sqrt(vmax) / math.sqrt(1 - 0.999 ** t) + 1e-8)
        opt.step()
        np.testing.assert_allclose(p.data, w, rtol=1e-13)


def test_param_groups_per_group_lr_and_decay_frozen_and_none_skipped():
    a, b, c, frozen = (Parameter(np.ones(2)) for _ in range(4))
    frozen.requires_grad = False
    opt = optim.SGD([{"params": [a], "lr": 0.5, "weight_decay": 1.0}, {"params": [b, frozen]}], lr=0.1)
    opt.add_param_group({"params": c, "momentum": 0.9})
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1, 0.1]
    assert opt.param_groups[2]["momentum"] == 0.9 and opt.param_groups[0]["momentum"] == 0.0
    for p in (a, b, c, frozen):
        p.grad = np.full(2, 2.0)
    opt.step()
    np.testing.assert_array_equal(a.data, 1 - 0.5 * (2 + 1.0))
    np.testing.assert_array_equal(b.data, 1 - 0.1 * 2)
    np.testing.assert_array_equal(frozen.data, 1.0)
    opt.zero_grad()                                      # set_to_none=True, PyTorch's default
    assert a.grad is None
    opt.step()                                           # no gradient: no step
    np.testing.assert_array_equal(a.data, -0.5)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(TypeError, match="must hold Parameters"):
        optim.Adam([{"params": [np.zeros(2)]}])
    with pytest.raises(KeyError, match="unknown parameter group key"):
        optim.Adam([{"params": [a], "momentum": 0.9}])


def test_state_dict_has_pytorch_structure_and_round_trips():
    ps = [Parameter(np.linspace(-1, 1, 3)), Parameter(np.ones((2, 2)))]
    opt = optim.Adam([{"params": ps[:1], "lr": 0.01}, {"params": ps[1:]}], lr=0.1, amsgrad=True)
    for t in range(3):
        for p in ps:
            p.grad = np.sin(p.data + t)
        opt.step()
    sd = opt.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    assert sorted(sd["state"]) == [0, 1] and sorted(sd["state"][1]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    assert sd["state"][0]["step"] == 3
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]] and sd["param_groups"][0]["lr"] == 0.01
    qs = [Parameter(p.data.copy()) for p in ps]
    opt2 = optim.Adam([{"params": qs[:1], "lr": 0.5}, {"params": qs[1:]}], lr=0.5, amsgrad=True)
    opt2.load_state_dict(sd)
    for p, q in zip(ps, qs):
        p.grad = q.grad = np.cos(p.data)
    opt.step()
    opt2.step()
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.data, q.data)
    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros(5)
    with pytest.raises(ValueError, match="state 'exp_avg' of parameter 1 has shape"):
        opt2.load_state_dict(bad)


def _lrs(make, n=12, metrics=None, opt="SGD"):
    p = Parameter(np.zeros(1))
    o = optim.SGD([p], lr=0.1, momentum=0.9) if opt == "SGD" else optim.Adam([p], lr=0.1)
    s = make(o)
    out = []
    for i in range(n):
        p.grad = np.ones(1)
        o.step()
        s.step(metrics[i]) if metrics else s.step()
        out.append(s.get_last_lr()[0])
    return out, o


def test_schedules_equal_recorded_pytorch():
    cos, _ = _lrs(lambda o: optim.CosineAnnealingLR(o, T_max=5, eta_min=0.01))
    assert cos == [0.09140576474687263, 0.06890576474687263, 0.04109423525312736, 0.018594235253127367, 0.01,
                   0.018594235253127367, 0.04109423525312739, 0.06890576474687267, 0.09140576474687269,
                   0.10000000000000006, 0.09140576474687272, 0.06890576474687268]
    # ... and the closed form (SGDR's eq. 5) to rounding
    np.testing.assert_allclose(cos, [0.01 + 0.09 * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(1, 13)],
                               rtol=1e-14)
    multi, _ = _lrs(lambda o: optim.MultiStepLR(o, [2, 5, 5, 9], gamma=0.5))
    assert multi == [0.1, 0.05, 0.05, 0.05, 0.0125, 0.0125, 0.0125, 0.0125, 0.00625, 0.00625, 0.00625, 0.00625]
    one, o = _lrs(lambda o: optim.OneCycleLR(o, max_lr=1.0, total_steps=12))
    assert one == [0.3497896542195831, 0.8792851591221287, 0.9944154354509117, 0.9330129698414117,
                   0.811745653949763, 0.6473789976951033, 0.46263710266697505, 0.28306099820869923,
                   0.1334775301888306, 0.03456698742539522, 4e-06, 0.034566987425395164]
    assert o.param_groups[0]["momentum"] == 0.9465436874322102
    one3, o = _lrs(lambda o: optim.OneCycleLR(o, max_lr=1.0, total_steps=12, three_phase=True), opt="Adam")
    assert one3[2:5] == [0.9450188923135407, 0.4621423934774446, 0.05394792763549498]
    assert o.param_groups[0]["betas"] == (0.95, 0.999)
    m = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    plateau, _ = _lrs(lambda o: optim.ReduceLROnPlateau(o, patience=1, factor=0.5, cooldown=1, min_lr=0.02), metrics=m)
    assert plateau == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02]
    lam, _ = _lrs(lambda o: optim.LambdaLR(o, lambda e: 1 / (1 + e)), n=3)
    assert lam == [0.1 / 2, 0.1 / 3, 0.1 / 4]
    step, _ = _lrs(lambda o: optim.StepLR(o, 2, 0.5), n=5)
    np.testing.assert_allclose(step, [0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-15)


def test_scheduler_state_dict_resumes():
    p = Parameter(np.zeros(1))
    o = optim.SGD([p], lr=0.1)
    s = optim.CosineAnnealingLR(o, T_max=7)
    for _ in range(3):
        s.step()
    sd, lr = s.state_dict(), o.param_groups[0]["lr"]
    assert sd["last_epoch"] == 3 and sd["base_lrs"] == [0.1]
    o2 = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    s2 = optim.CosineAnnealingLR(o2, T_max=7)
    o2.load_state_dict(o.state_dict())
    s2.load_state_dict(sd)
    assert o2.param_groups[0]["lr"] == lr
    s.step()
    s2.step()
    assert s.get_last_lr() == s2.get_last_lr()


@pytest.mark.parametrize("name,opt_cls,sched", [("old_adam.npz", "Adam", "cosine"), ("old_sgd.npz", "SGD", "step")])
def test_old_npunet_checkpoints_still_resume(name, opt_cls, sched):
    """Checkpoints written by npunet 0.1 (optimiser state as 'optim/m/0' ... and lr/base_lr/t)."""
    from npunet import data as D, losses, models
    from npunet.io import load_npz
    from npunet.train import Trainer
    x, lab, m = D.make_cells(4, 32, seed=2)
    loader = D.DataLoader(D.SegmentationDataset(x, m, lab, weight_map=False), batch_size=2, seed=4)
    net = models.UNet(1, 2, base_channels=2, depth=1, padding="same")
    if opt_cls == "Adam":
        opt = optim.Adam(net.parameters(), lr=1e-2)
        s = optim.CosineAnnealingLR(opt, 4)
    else:
        opt = optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
        s = optim.StepLR(opt, 1, 0.5)
    t = Trainer(net, losses.CrossEntropyLoss(), opt, loader, scheduler=s, progress=False, log=None)
    t.load(os.path.join(OLD, name))
    data = load_npz(os.path.join(OLD, name))
    sd = opt.state_dict()
    if opt_cls == "Adam":
        np.testing.assert_array_equal(sd["state"][3]["exp_avg"], data["optim/m/3"])
        np.testing.assert_array_equal(sd["state"][3]["exp_avg_sq"], data["optim/v/3"])
        assert sd["state"][0]["step"] == 2
        assert opt.lr == 0.01 * (1 + math.cos(math.pi / 4)) / 2 and sd["param_groups"][0]["initial_lr"] == 0.01
    else:
        np.testing.assert_array_equal(sd["state"][5]["momentum_buffer"], data["optim/momentum/5"])
        assert opt.lr == 0.005
    t.fit(2)
    expected = 0.01 * (1 + math.cos(math.pi * 2 / 4)) / 2 if opt_cls == "Adam" else 0.0025
    assert opt.lr == pytest.approx(expected, rel=1e-15)


def test_new_checkpoints_hold_pytorch_structured_state(tmp_path):
    from npunet import data as D, losses, models
    from npunet.train import Trainer
    x, lab, m = D.make_cells(4, 32, seed=2)
    loader = D.DataLoader(D.SegmentationDataset(x, m, lab, weight_map=False), batch_size=2, seed=4)

    def make():
        net = models.UNet(1, 2, base_channels=2, depth=1, padding="same")
        opt = optim.AdamW(net.parameters(), lr=1e-2)
        return Trainer(net, losses.CrossEntropyLoss(), opt, loader, scheduler=optim.MultiStepLR(opt, [1]),
                       progress=False, log=None)
    t = make()
    t.fit(1)
    t.save(tmp_path / "ck.npz")
    t2 = make().load(tmp_path / "ck.npz")
    a, b = t.optimizer.state_dict(), t2.optimizer.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["param_groups"][0]["lr"] == pytest.approx(1e-3)
    for i in a["state"]:
        assert a["state"][i]["step"] == b["state"][i]["step"] == 2
        np.testing.assert_array_equal(a["state"][i]["exp_avg"], b["state"][i]["exp_avg"])


def test_config_plateau_schedule_reads_validation_loss_and_resumes(tmp_path):
    from npunet.config import merge
    from npunet.runs import build_run
    cfg = {"n_train": 4, "n_val": 2, "size": 32, "batch_size": 2, "epochs": 2, "schedule": "plateau",
           "optimizer": "adamw", "model_config": {"base_channels": 2, "depth": 2}, "out": str(tmp_path / "run")}
    t = build_run(merge(cfg), progress=False, log=None)
    assert isinstance(t.scheduler, optim.ReduceLROnPlateau) and isinstance(t.optimizer, optim.AdamW)
    t.fit(2)
    assert len(t.history["val_loss"]) == 2 and all(np.isfinite(t.history["val_loss"]))
    assert t.scheduler.last_epoch == 2 and t.scheduler.best == min(t.history["val_loss"])
    t2 = build_run(merge(dict(cfg, epochs=3)), progress=False, log=None).load(tmp_path / "run" / "checkpoint.npz")
    assert t2.scheduler.best == t.scheduler.best and t2.scheduler.num_bad_epochs == t.scheduler.num_bad_epochs
