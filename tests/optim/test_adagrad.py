"""AdaGrad: torch.optim.Adagrad agreement, and sparse gradients equal their dense update."""

from __future__ import annotations

import itertools

import pytest
import torch

from stochopt.errors import UnsupportedError
from stochopt.optim import AdaGrad
from tests.optim.helpers import clone_params, grad_stream, make_params, run


def test_first_steps_by_hand() -> None:
    theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = AdaGrad([theta], lr=0.5, lr_decay=0.1, initial_accumulator_value=0.25, eps=0.0)
    theta.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()  # S = 0.25 + 4, step 0.5 * 2 / sqrt(4.25)
    assert theta.item() == pytest.approx(1.0 - 1.0 / 4.25**0.5, rel=1e-15)
    theta.grad = torch.tensor([-1.0], dtype=torch.float64)
    opt.step()  # lr decayed to 0.5 / 1.1; S = 5.25
    assert theta.item() == pytest.approx(1.0 - 1.0 / 4.25**0.5 + 0.5 / 1.1 / 5.25**0.5, rel=1e-15)


@pytest.mark.parametrize(("lr_decay", "weight_decay", "initial_accumulator_value", "maximize"),
                         list(itertools.product((0.0, 0.05), (0.0, 0.1), (0.0, 0.1),
                                                (False, True))))
def test_matches_torch_adagrad(lr_decay: float, weight_decay: float,
                               initial_accumulator_value: float, maximize: bool) -> None:
    """``torch.optim.Adagrad`` (the single-tensor path, torch 2.13.0) under each option,
    float64, 100 steps, parameters compared after every step. Both compute the same
    operations in the same order; rtol 1e-13 bounds the rounding of 100 steps."""
    kwargs = dict(lr=0.05, lr_decay=lr_decay, weight_decay=weight_decay,
                  initial_accumulator_value=initial_accumulator_value, eps=1e-6,
                  maximize=maximize)
    params = make_params()
    twins = clone_params(params)
    ours = AdaGrad(params, **kwargs, fused=False)
    reference = torch.optim.Adagrad(twins, **kwargs, foreach=False)
    for grads in grad_stream(params, steps=100):
        run(ours, params, [grads])
        run(reference, twins, [grads])
        for p, q in zip(params, twins):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-13, atol=1e-15)
    for p, q in zip(params, twins):
        torch.testing.assert_close(ours.state[p]["sum"], reference.state[q]["sum"], rtol=1e-13,
                                   atol=1e-15)


def _sparse_stream(steps: int, rows: int = 12, cols: int = 3) -> list[torch.Tensor]:
    """Uncoalesced sparse row gradients: 6 row indices per step, repeats included."""
    gen = torch.Generator().manual_seed(4)
    stream = []
    for _ in range(steps):
        index = torch.randint(0, rows, (1, 6), generator=gen)
        values = torch.randn(6, cols, generator=gen, dtype=torch.float64)
        stream.append(torch.sparse_coo_tensor(index, values, (rows, cols), check_invariants=True))
    return stream


@pytest.mark.parametrize("maximize", [False, True])
def test_sparse_gradients_equal_the_dense_update(maximize: bool) -> None:
    weight = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sparse_w = weight.clone().requires_grad_()
    dense_w = weight.clone().requires_grad_()
    torch_w = weight.clone().requires_grad_()
    kwargs = dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, maximize=maximize)
    sparse_opt = AdaGrad([sparse_w], **kwargs)
    dense_opt = AdaGrad([dense_w], **kwargs)
    torch_opt = torch.optim.Adagrad([torch_w], **kwargs)
    for grad in _sparse_stream(300):
        sparse_w.grad, torch_w.grad = grad, grad
        dense_w.grad = grad.to_dense()
        sparse_opt.step()
        dense_opt.step()
        with torch.sparse.check_sparse_tensor_invariants():  # torch builds sparse tensors
            torch_opt.step()
    torch.testing.assert_close(sparse_w, dense_w, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(sparse_opt.state[sparse_w]["sum"], dense_opt.state[dense_w]["sum"],
                               rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(sparse_w, torch_w, rtol=1e-13, atol=1e-15)


def test_sparse_embedding_updates_only_the_rows_it_touched() -> None:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 4, sparse=True)
    before = emb.weight.detach().clone()
    opt = AdaGrad(emb.parameters(), lr=0.1)
    emb(torch.tensor([2, 7, 2])).square().sum().backward()
    opt.step()
    changed = (emb.weight.detach() != before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [2, 7]


def test_sparse_gradients_refuse_weight_decay() -> None:
    w = torch.zeros(4, 2, requires_grad=True)
    opt = AdaGrad([w], weight_decay=0.1)
    w.grad = torch.sparse_coo_tensor([[0]], torch.ones(1, 2), (4, 2), check_invariants=True)
    with pytest.raises(UnsupportedError, match=r"weight_decay=0\.1 cannot be combined with sparse"):
        opt.step()


def test_fused_path_handles_dense_and_sparse_in_one_group() -> None:
    params = make_params()[2:4]
    emb_w = torch.zeros(6, 2, dtype=torch.float64, requires_grad=True)
    twins, emb_twin = clone_params(params), emb_w.detach().clone().requires_grad_()
    fused = AdaGrad([*params, emb_w], lr=0.1, fused=True)
    reference = AdaGrad([*twins, emb_twin], lr=0.1, fused=False)
    for grads in grad_stream(params, steps=4):
        sparse = torch.sparse_coo_tensor([[1, 3]], torch.ones(2, 2, dtype=torch.float64), (6, 2),
                                         check_invariants=True)
        for p, q, g in zip(params, twins, grads):
            p.grad, q.grad = g.clone(), g.clone()
        emb_w.grad, emb_twin.grad = sparse, sparse
        fused.step()
        reference.step()
    for p, q in zip([*params, emb_w], [*twins, emb_twin]):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
