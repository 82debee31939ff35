"""The simulator: FedFix with a window longer than every job is FedAvg round for round; on
quadratic clients the iterates settle at the surrogate optimum sum_i q_i c_i that the theory
predicts (q_i proportional to 1/tau_i for identical async weights, p_i for unbiased ones);
a run interrupted or extended and resumed from its checkpoint equals one run straight
through; damaged checkpoints and bad arguments are named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochopt.errors import DamagedFileError, DivergenceError
from stochopt.federated import (
    AsyncFedAvg,
    ClientTimes,
    FedAvg,
    FedBuff,
    FedFix,
    Simulation,
    dirichlet_split,
)
from stochopt.tasks.classification import _digits


def _digits_clients(M: int = 4, seed: int = 0):
    x, y, x_val, y_val = _digits()
    parts = dirichlet_split(y, M, alpha=0.5, seed=seed, min_size=20)
    return [(x[i], y[i]) for i in parts], (x_val, y_val)


def _mlp(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 10))


def _sim(scheme, times, *, model=None, optimizer=None, seed=0, **kw) -> Simulation:
    clients, test = _digits_clients(len(times))
    return Simulation(model or _mlp(), clients, scheme, times, loss=F.cross_entropy,
                      optimizer=optimizer or (lambda ps: torch.optim.SGD(ps, lr=0.1)),
                      local_steps=3, batch_size=16, test=test, seed=seed, **kw)


def test_fedfix_with_a_window_longer_than_every_job_is_fedavg_round_for_round():
    times = ClientTimes([1.0, 0.7, 0.4, 0.9])
    fedavg = _sim(FedAvg(), times).run(4.0, eval_every=1.0)  # rounds end at 1, 2, 3, 4
    fedfix = _sim(FedFix(1.25), times).run(5.0, eval_every=1.25)  # windows end at 1.25, ...
    assert [a.clients for a in fedfix.aggregations] == [(2, 1, 3, 0)] * 4
    assert [a.weights for a in fedfix.aggregations] == [a.weights for a in fedavg.aggregations]
    assert torch.equal(fedfix.model, fedavg.model)
    for ours, theirs in zip(fedfix.history, fedavg.history, strict=True):
        assert ours["loss"] == theirs["loss"] and ours["step"] == theirs["step"]


class _Point(nn.Module):
    """theta in R^2; the client's loss is 0.5 |theta - c_i|^2 with c_i its one data row."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand_as(x)


def _half_squared(out: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - c) ** 2).sum(-1).mean()


@pytest.mark.parametrize("weights", ["identical", "unbiased"])
def test_async_fedavg_settles_at_the_surrogate_optimum_the_theory_predicts(weights):
    # minimizer of sum_i q_i L_i is sum_i q_i c_i; with eta_g = 0.02 the iterate moves by
    # at most 0.02 * d_i * (1 - 0.9^5) |c_i - theta| per step and settles (by t = 60, about
    # 700 aggregations) within 0.016 of it, a distance that does not shrink with a longer
    # run (the O(eta_g) wobble of a periodic schedule); the two optima are 0.46 apart
    c = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [1.0, -2.0]], dtype=torch.float64)
    tau = torch.tensor([1.0, 0.5, 0.25, 0.2], dtype=torch.float64)
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    clients = [(c[i:i + 1], c[i:i + 1]) for i in range(4)]
    sim = Simulation(_Point(), clients, AsyncFedAvg(weights), ClientTimes(tau),
                     loss=_half_squared, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                     local_steps=5, batch_size=1, server_lr=0.02, p=p)
    run = sim.run(60.0, eval_every=60.0)
    q = (1 / tau) / (1 / tau).sum() if weights == "identical" else p
    other = p if weights == "identical" else (1 / tau) / (1 / tau).sum()
    assert torch.linalg.norm(q @ c - other @ c) > 0.4
    assert torch.linalg.norm(run.model - q @ c) < 0.03


def test_a_run_extended_from_its_checkpoint_equals_one_run_straight_through(tmp_path):
    times = ClientTimes([1.0, 0.6, 0.3, 0.8], distribution="exponential")
    straight = _sim(FedBuff(2), times).run(6.0, eval_every=1.0)
    path = tmp_path / "run.pt"
    _sim(FedBuff(2), times).run(2.5, eval_every=1.0, checkpoint=path)
    resumed = _sim(FedBuff(2), times).run(6.0, eval_every=1.0, checkpoint=path)
    assert resumed.history == straight.history
    assert resumed.aggregations == straight.aggregations and resumed.times == straight.times
    assert torch.equal(resumed.model, straight.model)


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    times = ClientTimes([1.0, 0.6, 0.3, 0.8])
    straight = _sim(FedFix(0.5), times).run(5.0, eval_every=1.0)
    jobs = []

    def crashing(params):
        jobs.append(1)
        if len(jobs) == 25:
            raise KeyboardInterrupt
        return torch.optim.SGD(params, lr=0.1)

    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _sim(FedFix(0.5), times, optimizer=crashing).run(5.0, eval_every=1.0, checkpoint=path)
    assert path.exists()
    resumed = _sim(FedFix(0.5), times).run(5.0, eval_every=1.0, checkpoint=path)
    assert resumed.history == straight.history
    assert torch.equal(resumed.model, straight.model)


def test_a_seeded_run_with_dropout_is_deterministic_and_leaves_the_global_rng_alone():
    times = ClientTimes([1.0, 0.5, 0.8, 0.3])
    state = torch.get_rng_state()
    a = _sim(AsyncFedAvg("identical"), times, model=_mlp(0.3), server_lr=0.3).run(2.0)
    torch.set_rng_state(state)
    b = _sim(AsyncFedAvg("identical"), times, model=_mlp(0.3), server_lr=0.3).run(2.0)
    assert torch.equal(a.model, b.model) and a.history == b.history
    c = _sim(AsyncFedAvg("identical"), times, model=_mlp(0.3), server_lr=0.3, seed=1).run(2.0)
    assert not torch.equal(a.model, c.model)


def test_any_optimizer_trains_the_clients():
    from stochopt.optim import AdamW

    times = ClientTimes([1.0, 0.5, 0.8, 0.3])
    run = _sim(FedFix(0.5), times, optimizer=lambda ps: AdamW(ps, lr=3e-2)).run(
        6.0, eval_every=6.0)
    first, last = run.history[0], run.history[-1]
    assert last["loss"] < 0.7 * first["loss"] and last["test_accuracy"] > 0.5


def test_a_damaged_or_foreign_checkpoint_is_named(tmp_path):
    times = ClientTimes([1.0, 0.5, 0.8, 0.3])
    path = tmp_path / "run.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DamagedFileError, match=str(path)):
        _sim(FedAvg(), times).run(2.0, checkpoint=path)
    path.unlink()
    _sim(FedAvg(), times).run(2.0, checkpoint=path)
    with pytest.raises(ValueError, match="seed: saved 0, now 1"):
        _sim(FedAvg(), times, seed=1).run(3.0, checkpoint=path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match="cannot be read"):
        _sim(FedAvg(), times).run(3.0, checkpoint=path)
    torch.save({"format": 1}, path)
    with pytest.raises(DamagedFileError, match="lacks the fields"):
        _sim(FedAvg(), times).run(3.0, checkpoint=path)


def test_a_diverging_client_is_reported():
    times = ClientTimes([1.0, 0.5, 0.8, 0.3])
    with pytest.raises(DivergenceError, match=r"client \d+'s local training diverged"):
        _sim(FedAvg(), times, optimizer=lambda ps: torch.optim.SGD(ps, lr=1e30)).run(3.0)


@pytest.mark.parametrize("change, error, match", [
    ({"times": ClientTimes([1.0, 0.5])}, ValueError, "one time per client"),
    ({"scheme": FedBuff(5)}, ValueError, "at most the number of clients, 4"),
    ({"scheme": "fedavg"}, TypeError, "scheme must be"),
    ({"p": [0.5, 0.5, 0.5, -0.5]}, ValueError, "distribution"),
    ({"p": [0.5, 0.5]}, ValueError, "2 entries for 4 clients"),
    ({"clients": []}, TypeError, "non-empty sequence"),
    ({"clients": [(torch.zeros(3, 64), torch.zeros(2))] * 4}, ValueError, r"clients\[0\]"),
    ({"local_steps": 0}, ValueError, "local_steps must be >= 1"),
    ({"optimizer": None}, TypeError, "optimizer must be callable"),
    ({"model": nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).double())}, TypeError,
     "one floating dtype"),
])
def test_bad_arguments_are_named(change, error, match):
    clients, _ = _digits_clients(4)
    kwargs = {"model": _mlp(), "clients": clients, "scheme": FedAvg(),
              "times": ClientTimes([1.0, 0.5, 0.8, 0.3]), "loss": F.cross_entropy,
              "optimizer": lambda ps: torch.optim.SGD(ps, lr=0.1), **change}
    with pytest.raises(error, match=match):
        Simulation(kwargs.pop("model"), kwargs.pop("clients"), kwargs.pop("scheme"),
                   kwargs.pop("times"), **kwargs)


def test_an_optimizer_factory_must_return_an_optimizer():
    with pytest.raises(TypeError, match=r"must return a torch\.optim\.Optimizer"):
        _sim(FedAvg(), ClientTimes([1.0, 0.5, 0.8, 0.3]), optimizer=lambda ps: None).run(2.0)
