"""The server step against the paper's formula computed by hand in float64 (stale versions,
server learning rate, each weighting), synchronous FedAvg bit for bit against Flower's own
FedAvg on the same replies, and a server that refuses bad replies unchanged."""

from __future__ import annotations

import time

import pytest
import torch

from stochopt.federated import (
    AsyncFedAvg,
    FedAvg,
    FedBuff,
    FedFix,
    Server,
    aggregate,
    surrogate_importance,
    unbiased_weights,
)

P = torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64)


def _models(n: int, d: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(d, generator=g, dtype=torch.float64) for _ in range(n)]


def test_a_stale_async_step_is_the_papers_formula():
    # theta^{n+1} = theta^n + eta_g * d_i * (theta_i - theta^{rho_i(n)}), rho_i(n) < n
    theta0, m1, m2, m3 = _models(4)
    tau = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    f = (1 / tau) / (1 / tau).sum()
    server = Server(AsyncFedAvg("unbiased"), theta0, P, server_lr=0.7, participation=f)
    for i in range(3):
        server.send(i)
    server.receive(2, m1)
    assert server.ready()
    first = server.aggregate()
    d2 = float((1 / tau).sum() * tau[2] * P[2])  # the paper's (sum_j 1/tau_j) tau_i p_i
    theta1 = theta0 + 0.7 * d2 * (m1 - theta0)
    assert torch.equal(server.theta, theta1)
    assert first.weights == pytest.approx((d2,), rel=1e-15)
    server.send(2)
    server.receive(0, m2)  # client 0 started from version 0: stale by one step
    second = server.aggregate()
    d0 = float((1 / tau).sum() * tau[0] * P[0])
    assert torch.allclose(server.theta, theta1 + 0.7 * d0 * (m2 - theta0), rtol=0,
                          atol=1e-15)
    assert second.staleness == (1,)
    server.receive(2, m3)  # from version 1
    third = server.aggregate()
    assert third.versions == (1,)
    assert server.versions.keys() == {0, 3}  # client 1 still works from version 0


def test_fedbuff_sums_in_arrival_order_with_identical_weights():
    theta0, *replies = _models(4, seed=1)
    server = Server(FedBuff(2), theta0, P, server_lr=2.0)
    for i in range(3):
        server.send(i)
    server.receive(1, replies[0])
    assert not server.ready()
    server.receive(0, replies[1])
    assert server.ready()
    record = server.aggregate()
    step = 0.5 * (replies[0] - theta0) + 0.5 * (replies[1] - theta0)
    assert torch.allclose(server.theta, theta0 + 2.0 * step, rtol=0, atol=1e-15)
    assert record.clients == (1, 0) and record.weights == (0.5, 0.5)


def test_observed_weights_are_p_over_the_running_participation():
    theta0, *replies = _models(5, seed=2)
    server = Server(AsyncFedAvg("observed"), theta0, P)
    for i in range(3):
        server.send(i)
    got = []
    for client, model in zip((0, 1, 0, 2), replies):
        server.receive(client, model)
        got.append(server.aggregate().weights[0])
        server.send(client)
    # client 0: in 1 of 1 aggregations, then in 2 of 3; client 1 in 1 of 2; client 2 1 of 4
    assert got == pytest.approx([0.5 / 1, 0.2 / (1 / 2), 0.5 / (2 / 3), 0.3 / (1 / 4)],
                                rel=1e-15)


def test_fedfix_window_with_nobody_is_a_step_that_keeps_the_model():
    theta0, m = _models(2, seed=3)
    f = torch.tensor([1.0, 0.5, 1 / 3], dtype=torch.float64)
    server = Server(FedFix(0.5), theta0, P, participation=f)
    for i in range(3):
        server.send(i)
    empty = server.aggregate()
    assert empty.clients == () and torch.equal(server.theta, theta0) and server.step == 1
    server.receive(1, m)
    server.aggregate()
    # d_1 = ceil(tau_1 / dt) p_1 = 2 * 0.2, applied to the delta from version 0
    assert torch.allclose(server.theta, theta0 + 0.4 * (m - theta0), rtol=0, atol=1e-15)


def test_synchronous_fedavg_equals_flowers_fedavg_bit_for_bit():
    flwr = pytest.importorskip("flwr")
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.app.metadata import Metadata
    from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

    assert flwr.__version__
    g = torch.Generator().manual_seed(4)
    theta = torch.randn(1000, generator=g)  # float32, as models are
    models = [theta + 0.1 * torch.randn(1000, generator=g) for _ in range(5)]
    sizes = [13, 7, 29, 41, 3]
    replies = []
    for i, (model, n) in enumerate(zip(models, sizes)):
        metadata = Metadata(run_id=1, message_id=f"r{i}", src_node_id=i + 1, dst_node_id=0,
                            reply_to_message_id=f"m{i}", group_id="1",
                            created_at=time.time(), ttl=60.0, message_type="train")
        content = RecordDict({"arrays": ArrayRecord({"w": Array(model.numpy())}),
                              "metrics": MetricRecord({"num-examples": n})})
        replies.append(Message(content=content, metadata=metadata))
    arrays, _ = FlowerFedAvg().aggregate_train(1, replies)
    n = torch.tensor(sizes, dtype=torch.float64)
    server = Server(FedAvg(), theta, n / n.sum())
    for i in range(5):
        server.send(i)
    for i, model in enumerate(models):
        server.receive(i, model)
    server.aggregate()
    assert torch.equal(server.theta, torch.from_numpy(arrays["w"].numpy()))


@pytest.mark.parametrize("call, match", [
    (lambda s, m: s.receive(0, m), "no work out"),
    (lambda s, m: s.send(3), r"client must be in \[0, 2\]"),
    (lambda s, m: (s.send(0), s.send(0)), "already has work"),
    (lambda s, m: (s.send(0), s.receive(0, m[:3])), "shape"),
    (lambda s, m: (s.send(0), s.receive(0, m * float("nan"))), "NaN"),
    (lambda s, m: s.drop(1), "no work out"),
])
def test_a_bad_reply_is_refused_and_leaves_the_server_as_it_was(call, match):
    theta0, m = _models(2, seed=5)
    server = Server(FedBuff(2), theta0, P)
    before = (server.theta.clone(), dict(server.out), list(server.buffer), server.step)
    with pytest.raises(ValueError, match=match):
        call(server, m)
    out = {k: v for k, v in server.out.items() if k != 0}  # a first send(0) may have passed
    assert torch.equal(server.theta, before[0]) and server.buffer == before[2]
    assert server.step == before[3] and out == before[1]


@pytest.mark.parametrize("make, match", [
    (lambda: Server(FedBuff(4), torch.zeros(2), P), "at most the number of clients, 3"),
    (lambda: Server(FedFix(0.5), torch.zeros(2), P), "needs participation"),
    (lambda: Server(FedAvg(), torch.zeros(2), torch.tensor([0.5, 0.6])), "distribution"),
    (lambda: Server(FedAvg(), torch.zeros(2), torch.tensor([1.5, -0.5])), "distribution"),
    (lambda: Server(FedAvg(), torch.zeros(2), P, server_lr=0.0), "server_lr"),
    (lambda: FedFix(0.0), "dt must be in"),
    (lambda: FedFix(-1.0), "dt must be in"),
    (lambda: FedBuff(0), "c must be >= 1"),
    (lambda: AsyncFedAvg("equal"), "weights must be one of"),
    (lambda: FedAvg("identical"), "always p_i"),
])
def test_bad_settings_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_weights_and_surrogate_by_hand():
    f = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    assert torch.equal(unbiased_weights(P, f), P / f)
    q = surrogate_importance(torch.ones(3), f)  # identical weights: q proportional to f
    assert torch.allclose(q, f / f.sum(), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="participation must be in"):
        unbiased_weights(P, torch.tensor([1.0, 0.0, 0.5]))
    theta, a, b = _models(3, seed=6)
    assert torch.allclose(aggregate(theta, [a, b], [0.3, 0.9], 0.5),
                          theta + 0.5 * (0.3 * a + 0.9 * b), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="2 deltas but 1 weights"):
        aggregate(theta, [a, b], [0.3])
