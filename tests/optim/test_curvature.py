"""The curvature machinery shared by AdaHessian and Sophia: schedule, estimates, memory."""

from __future__ import annotations

import gc
import io
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F

from stochopt.errors import MissingCurvatureError
from stochopt.optim import AdaHessian, SophiaG, SophiaH


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.randn(32, 6)
    y = torch.randint(0, 3, (32,))
    return model, x, y


def _train(opt, model, x, y, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.backward(loss, logits=logits)
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("cls", [AdaHessian, SophiaH, SophiaG])
def test_refreshes_on_steps_1_k_plus_1_and_only_then(cls) -> None:
    model, x, y = _model_and_batch()
    opt = cls(model.parameters(), lr=1e-2, update_period=3)
    key = "exp_hessian_diag_sq" if cls is AdaHessian else "hessian"
    due, changed = [], []
    for _ in range(7):
        due.append(opt.curvature_due)
        before = [opt.state[p][key].clone() for p in model.parameters()] if opt.state else None
        _train(opt, model, x, y, 1)
        after = [opt.state[p][key] for p in model.parameters()]
        changed.append(before is None or any(not torch.equal(a, b) for a, b in zip(after, before)))
    assert due == [True, False, False, True, False, False, True]
    assert changed == due


@pytest.mark.parametrize("cls", [AdaHessian, SophiaH])
def test_plain_backward_on_a_curvature_step_says_what_to_do(cls) -> None:
    model, x, y = _model_and_batch()
    opt = cls(model.parameters(), update_period=2)
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(MissingCurvatureError, match=r"call opt.backward\(loss\) instead of"):
        opt.step()
    _train(opt, model, x, y, 1)  # step 1 with the graph
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()  # step 2 needs no curvature
    opt.step()


def test_sophia_g_needs_logits_on_curvature_steps() -> None:
    model, x, y = _model_and_batch()
    opt = SophiaG(model.parameters())
    with pytest.raises(ValueError, match=r"logits=\.\.\. is required on curvature steps"):
        opt.backward(F.cross_entropy(model(x), y))


def test_gradients_are_detached_and_memory_does_not_grow() -> None:
    model, x, y = _model_and_batch()
    opt = SophiaH(model.parameters(), lr=1e-2, update_period=2)

    def live_tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():  # isinstance touches deprecated torch module proxies
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    _train(opt, model, x, y, 20)
    baseline = live_tensors()
    _train(opt, model, x, y, 200)
    assert live_tensors() <= baseline
    assert all(p.grad.grad_fn is None for p in model.parameters())


def test_several_param_groups_share_one_estimate_pass() -> None:
    model, x, y = _model_and_batch()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    opt = AdaHessian([{"params": first, "lr": 0.0}, {"params": second, "lr": 0.1}])
    before = [p.detach().clone() for p in first]
    _train(opt, model, x, y, 3)
    assert all(torch.equal(p, b) for p, b in zip(first, before))  # lr 0 keeps them
    assert all(opt.state[p]["exp_hessian_diag_sq"].abs().sum() > 0 for p in first + second)


@pytest.mark.parametrize("cls", [AdaHessian, SophiaH, SophiaG])
def test_resume_with_real_estimates_is_bit_exact(cls) -> None:
    model, x, y = _model_and_batch()
    opt = cls(model.parameters(), lr=1e-2, update_period=2, seed=5)
    _train(opt, model, x, y, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    twin, _, _ = _model_and_batch(seed=1)
    twin.load_state_dict(saved["model"])
    resumed = cls(twin.parameters(), lr=1e-2, update_period=2, seed=99)
    resumed.load_state_dict(saved["opt"])
    assert _train(opt, model, x, y, 5) == _train(resumed, twin, x, y, 5)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("cls", [AdaHessian, SophiaH, SophiaG])
def test_a_pickled_optimizer_trains_on_like_the_original(cls) -> None:
    model, x, y = _model_and_batch()
    opt = cls(model.parameters(), lr=1e-2, update_period=2, seed=3, process_group="world")
    _train(opt, model, x, y, 3)
    twin_model, twin = pickle.loads(pickle.dumps((model, opt)))  # used to lose process_group
    assert twin.process_group == "world"
    assert _train(opt, model, x, y, 3) == _train(twin, twin_model, x, y, 3)
