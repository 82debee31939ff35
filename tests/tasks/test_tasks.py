"""Every registered task builds and trains deterministically from its seed."""

from __future__ import annotations

import pytest
import torch

from stochopt.tasks import TASKS, FunctionTask, get_task


def _losses(name: str, seed: int, steps: int = 5) -> list[float]:
    problem = TASKS[name].build(seed)
    opt = torch.optim.SGD(problem.model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = problem.train_loss()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", list(TASKS))
def test_same_seed_gives_the_same_losses(name: str) -> None:
    first = _losses(name, seed=3)
    assert first == _losses(name, seed=3)
    assert all(torch.isfinite(torch.tensor(first)))
    figures = TASKS[name].build(3).evaluate()
    assert "val_loss" in figures and TASKS[name].metric.name in figures


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if not isinstance(t, FunctionTask)])
def test_another_seed_gives_other_losses(name: str) -> None:
    assert _losses(name, seed=3) != _losses(name, seed=4)


@pytest.mark.parametrize("name", list(TASKS))
def test_the_logits_flag_says_whether_the_task_gives_logits(name: str) -> None:
    """A suite refuses Sophia-G on a task without logits before anything runs, from this
    flag (issue #20): it must agree with what the task's problem returns."""
    task = TASKS[name]
    _, logits = task.build(0, batch_size=2 if task.batch_size else None).train_outputs()
    assert task.logits == (logits is not None)


def test_unknown_task_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="unknown task 'mnist'; available: digits-mlp"):
        get_task("mnist")


def test_building_a_task_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for task in TASKS.values():
        task.build(7)
    assert torch.equal(torch.rand(3), expected)
