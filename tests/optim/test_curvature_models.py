"""Curvature optimizers on real models: torch's attention modules and torch.compile'd models.

Hutchinson estimators (SophiaH, AdaHessian) need a double backward, which the fused
scaled_dot_product_attention kernels and aot_autograd lack; the Gauss-Newton-Bartlett
estimator (SophiaG) runs backward twice through the logits' graph, which a compiled graph
with donated buffers refuses once its backward was compiled on an ordinary step.
``opt.curvature_forward()`` makes the curvature steps' forward usable; without it the
optimizer refuses before anything changes, naming the fix.

Compiled models use the ``aot_eager`` backend (aot_autograd, where both limits live, without
inductor's C compile); one slow test repeats the double-backward case on inductor.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stochopt.errors import UnsupportedError
from stochopt.optim import AdaHessian, SophiaG, SophiaH
from tests.contract import assert_unchanged

HUTCHINSON = [SophiaH, AdaHessian]


@pytest.fixture
def fresh_dynamo():
    """Each compiled test starts from an empty dynamo cache (no recompile-limit fallback)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _encoder_layer(seed: int = 0) -> nn.TransformerEncoderLayer:
    torch.manual_seed(seed)
    return nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)


def _batch(seed: int = 1, length: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, length, 16, generator=gen), torch.randn(4, length, 16, generator=gen)


class _TinyLM(nn.Module):
    """Embedding, one nn.TransformerEncoderLayer (fused attention), a vocabulary head."""

    def __init__(self, vocab: int = 11, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.block = nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.embed(idx)))  # (B, T, vocab)


def _graph_names(t: torch.Tensor) -> set[str]:
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(n for n, _ in node.next_functions)
    return {type(n).__name__ for n in seen}


# ------------------------------------------------------------------ attention modules
@pytest.mark.parametrize("cls", HUTCHINSON)
def test_hutchinson_trains_a_transformer_encoder_layer_under_curvature_forward(cls) -> None:
    layer, (x, target) = _encoder_layer(), _batch()
    opt = cls(layer.parameters(), lr=1e-2, update_period=2)
    losses, kernels = [], []
    for _ in range(6):
        opt.zero_grad()
        with opt.curvature_forward():
            loss = F.mse_loss(layer(x), target)
        kernels.append("ScaledDotProductFlashAttentionForCpuBackward0" in _graph_names(loss))
        opt.backward(loss)
        opt.step()
        losses.append(loss.item())
    # the math kernel on curvature steps (1, 3, 5) only; ordinary steps keep the fused one
    assert kernels == [False, True] * 3
    curvature = opt.state[layer.self_attn.in_proj_weight]
    estimate = curvature["hessian" if cls is SophiaH else "exp_hessian_diag_sq"]
    # the in-projection's curvature goes through attention's backward: nonzero and finite
    assert estimate.isfinite().all() and estimate.abs().sum() > 0
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("cls", HUTCHINSON)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_hutchinson_refuses_fused_attention_before_anything_changes(cls, mode) -> None:
    layer, (x, target) = _encoder_layer(), _batch()
    getattr(layer, mode)()  # eval: torch's fast path is off while gradients are recorded
    opt = cls(layer.parameters(), lr=1e-2)
    loss = F.mse_loss(layer(x), target)
    assert_unchanged(lambda: opt.backward(loss), opt, layer,
                     names=["opt.curvature_forward()"])
    assert all(p.grad is None for p in layer.parameters())  # no backward ran


def test_step_refuses_a_gradient_graph_without_double_backward() -> None:
    # the user kept the graph themselves (loss.backward(create_graph=True)), through the fused
    # kernel: step() finds the node without a derivative before drawing a probe
    layer, (x, target) = _encoder_layer(), _batch()
    opt = SophiaH(layer.parameters(), lr=1e-2)
    F.mse_loss(layer(x), target).backward(create_graph=True)
    assert_unchanged(opt.step, opt, layer, names=["opt.curvature_forward()"])
    for p in layer.parameters():
        p.grad = None  # break the reference cycle create_graph made


# -------------------------------------------------------------------- compiled models
@pytest.mark.usefixtures("fresh_dynamo")
def test_hutchinson_on_a_compiled_model_runs_curvature_steps_eagerly() -> None:
    layer, (x, target) = _encoder_layer(), _batch()
    compiled = torch.compile(layer, backend="aot_eager")
    opt = SophiaH(layer.parameters(), lr=1e-2, update_period=2)
    loss = F.mse_loss(compiled(x), target)
    assert_unchanged(lambda: opt.backward(loss), opt, layer, names=["opt.curvature_forward()"])
    compiled_steps = []
    for _ in range(4):
        opt.zero_grad()
        with opt.curvature_forward():
            loss = F.mse_loss(compiled(x), target)
        compiled_steps.append("CompiledFunctionBackward" in _graph_names(loss))
        opt.backward(loss)
        opt.step()
    assert compiled_steps == [False, True, False, True]  # eager only on curvature steps
    assert opt.state[layer.linear1.weight]["hessian"].abs().sum() > 0


def _train_lm(opt: SophiaG, model: nn.Module, lengths: list[int]) -> list[float]:
    """Steps of a compiled tiny LM under bf16 autocast, one sequence length per step."""
    losses = []
    for step, length in enumerate(lengths):
        gen = torch.Generator().manual_seed(step)
        idx = torch.randint(0, 11, (4, length + 1), generator=gen)
        opt.zero_grad()
        with opt.curvature_forward(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), idx[:, 1:].flatten())
        opt.backward(loss, logits=logits)
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.usefixtures("fresh_dynamo")
def test_sophia_g_on_a_compiled_model_under_bf16_autocast_survives_a_recompile() -> None:
    # step 2 compiles a graph for a new length with a plain backward (donated buffers); step
    # 3, a curvature step at that length, needs a second backward through it
    torch.manual_seed(0)
    model = _TinyLM()
    compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    opt = SophiaG(model.parameters(), lr=1e-2, update_period=2)
    losses = _train_lm(opt, compiled, [6, 7, 7, 7])
    assert all(torch.isfinite(torch.tensor(losses)))
    assert opt.state[model.head.weight]["hessian"].abs().sum() > 0


@pytest.mark.usefixtures("fresh_dynamo")
def test_sophia_g_refuses_donated_buffers_at_the_first_step() -> None:
    torch.manual_seed(0)
    model = _TinyLM()
    compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    opt = SophiaG(model.parameters(), lr=1e-2, update_period=2)
    idx = torch.randint(0, 11, (4, 7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = compiled(idx[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), idx[:, 1:].flatten())
    assert_unchanged(lambda: opt.backward(loss, logits=logits), opt, model,
                     names=["donated_buffer"])
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.usefixtures("fresh_dynamo")
def test_sophia_g_stays_compiled_without_donated_buffers() -> None:
    # the other fix: compile without donated buffers; curvature steps then stay compiled
    with torch._functorch.config.patch(donated_buffer=False):  # torch's own patch, undone
        _train_without_donated_buffers()
    assert torch._functorch.config.donated_buffer  # as every other test expects


def _train_without_donated_buffers() -> None:
    torch.manual_seed(0)
    model = _TinyLM()
    compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    compiled(torch.randint(0, 11, (4, 6))).sum().backward()  # the graph's first backward: plain
    model.zero_grad()
    opt = SophiaG(model.parameters(), lr=1e-2, update_period=2)
    with opt.curvature_forward():  # a curvature step; the context leaves compiled code be
        logits = compiled(torch.randint(0, 11, (4, 6)))
    assert "CompiledFunctionBackward" in _graph_names(logits)
    assert all(torch.isfinite(torch.tensor(_train_lm(opt, compiled, [6, 6, 6]))))


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_dynamo")
def test_hutchinson_on_an_inductor_compiled_model() -> None:
    # the default backend (inductor: a C compile, about 10-30 s here)
    layer, (x, target) = _encoder_layer(), _batch()
    compiled = torch.compile(layer)
    opt = AdaHessian(layer.parameters(), lr=1e-2, update_period=2)
    with pytest.raises(UnsupportedError, match="curvature_forward"):
        opt.backward(F.mse_loss(compiled(x), target))
    for _ in range(3):
        opt.zero_grad()
        with opt.curvature_forward():
            loss = F.mse_loss(compiled(x), target)
        opt.backward(loss)
        opt.step()
    assert opt.state[layer.linear1.weight]["exp_hessian_diag_sq"].abs().sum() > 0
