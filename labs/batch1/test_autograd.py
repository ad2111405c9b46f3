"""Step 1, the engine: the backward pass over a graph (topological order, accumulation
into tensors used more than once, broadcasting), no-grad mode, and leaves' gradients.

These tests need nothing but ``nn/tensor.py``: the graphs are built from tiny
Functions defined here (not from the operations of steps 2–3), so they pass as soon as
``unbroadcast``, ``topological_order`` and ``Tensor.backward`` are written.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.extra import numpy as hnp

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.nn import Function, Tensor, is_grad_enabled, no_grad, topological_order, unbroadcast

pytestmark = pytest.mark.step(1)


class _Mul(Function):
    """a·b with numpy broadcasting; the backward returns broadcast-shape gradients (the
    engine must unbroadcast them)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return g * b, g * a


class _Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class _Scale(Function):
    """c·a for a constant keyword c; returns a bare array (not a tuple) from backward."""

    @staticmethod
    def forward(ctx, a, c):
        ctx.c = c
        return a * c

    @staticmethod
    def backward(ctx, g):
        return g * ctx.c


class _Sum(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.shape = a.shape
        return np.asarray(a.sum())

    @staticmethod
    def backward(ctx, g):
        return np.broadcast_to(g, ctx.shape)


def mul(a, b):
    return _Mul.apply(a, b)


def add(a, b):
    return _Add.apply(a, b)


def total(a):
    return _Sum.apply(a)


def _torch_unbroadcast(g, shape):
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    x.expand(g.shape).backward(torch.as_tensor(g))
    return x.grad


@pytest.mark.points(1)
@settings(max_examples=25, deadline=None, phases=(Phase.explicit, Phase.generate), database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4))
def test_unbroadcast_sums_to_the_input_shape(shapes, rng):
    """unbroadcast(g, s) is the gradient of broadcast_to(x, g.shape) for x of shape s."""
    for shape in shapes.input_shapes:
        g = rng.standard_normal(shapes.result_shape)
        assert_close(unbroadcast(g, shape), _torch_unbroadcast(g, shape), dtype="float64", scale=10,
                     what=f"unbroadcast to {shape}")


# Every kind of broadcast, planted: prepended axes only, stretched axes only (first,
# middle, last), both at once, a scalar, and no broadcast at all.
UNBROADCAST_CASES = [((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((2, 3, 4), (1, 3, 4)), ((2, 3, 4), (2, 1, 4)),
                     ((2, 3, 4), (2, 3, 1)), ((5, 2, 3, 4), (2, 1, 1)), ((5, 2, 3, 4), (1, 1, 1, 4)),
                     ((3, 4), ()), ((3, 4), (1,)), ((3, 4), (3, 4)), ((1, 4), (1, 1))]


@pytest.mark.points(0.5)
@pytest.mark.parametrize("result,shape", UNBROADCAST_CASES, ids=lambda s: "x".join(map(str, s)) or "scalar")
def test_unbroadcast_planted_cases(result, shape, rng):
    g = rng.standard_normal(result)
    out = unbroadcast(g.copy(), shape)
    assert np.shape(out) == shape, f"unbroadcast to {shape} returned shape {np.shape(out)}"
    assert_close(out, _torch_unbroadcast(g, shape), dtype="float64", scale=10, what=f"unbroadcast {result} -> {shape}")


@pytest.mark.points(1)
def test_shared_subexpressions_accumulate(rng):
    """y = Σ (a·b + a)·(a·b) uses a three times and a·b twice: gradients must add up
    (and b is broadcast, so its gradient is summed back to its shape)."""
    a0, b0 = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
    ab = mul(a, b)
    y = total(mul(add(ab, a), ab))
    y.backward()
    ta, tb = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    tab = ta * tb
    ((tab + ta) * tab).sum().backward()
    assert_close(y.data, ((tab + ta) * tab).sum(), dtype="float64", scale=10, what="value")
    assert_close(a.grad, ta.grad, dtype="float64", scale=10, what="d/da")
    assert_close(b.grad, tb.grad, dtype="float64", scale=10, what="d/db (broadcast)")


@pytest.mark.points(1)
def test_diamond_graph_visits_each_node_once(rng):
    """x feeds two branches that meet again (a diamond, twice over); each intermediate
    must be processed once, after all its consumers: d/dx of Σ((x·2 + x·3)·(x·2)) ."""
    x0 = rng.standard_normal(5)
    x = Tensor(x0, requires_grad=True)
    u, v = _Scale.apply(x, c=2.0), _Scale.apply(x, c=3.0)
    w = add(u, v)                       # 5x
    y = total(mul(w, u))                # Σ 10x²
    y.backward()
    assert_close(x.grad, 20.0 * x0, dtype="float64", scale=10, what="d/dx through a diamond")
    order = topological_order(y)
    assert len(order) == len({id(t) for t in order}) == 6, \
        f"topological order must list each of the 6 tensors once, got {len(order)} entries"
    # an input used twice by one node, and an input reached first directly then through a path
    for root, count in [(mul(x, x), 2), (add(x, _Scale.apply(x, c=2.0)), 3),
                        (add(_Scale.apply(x, c=2.0), x), 3), (mul(add(x, x), _Scale.apply(x, c=3.0)), 4)]:
        order = topological_order(root)
        assert len(order) == len({id(t) for t in order}) == count, \
            f"each tensor once: {count} tensors, {len(order)} entries ({len({id(t) for t in order})} distinct)"


@pytest.mark.points(1)
def test_topological_order_puts_inputs_first_and_handles_deep_graphs(rng):
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    h = x
    for _ in range(3000):          # deeper than Python's recursion limit
        h = add(_Scale.apply(h, c=1.0001), x)
    order = topological_order(h)
    position = {id(t): i for i, t in enumerate(order)}
    assert len(order) == len(position) == 6001, f"{len(order)} entries for 6001 tensors"
    assert order[-1] is h and position[id(x)] == 0
    for t in order:
        if t.history is not None:
            for parent in t.history.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad:
                    assert position[id(parent)] < position[id(t)], "an input comes after its output"
    total(h).backward()
    expected = sum(1.0001 ** k for k in range(3001))   # h = x·Σ 1.0001^k
    assert_close(x.grad, np.full(3, expected), dtype="float64", scale=1e4, what="gradient through 3000 steps")


@pytest.mark.points(1)
def test_topological_order_skips_tensors_without_grad(rng):
    """Constants (requires_grad False) are not part of the order; the root comes last."""
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    c = Tensor(rng.standard_normal(3))
    y = mul(add(x, c), c)
    order = topological_order(y)
    assert [id(t) for t in order] == [id(x), id(order[1]), id(y)] and len(order) == 3
    assert all(t is not c for t in order)


@pytest.mark.points(1)
def test_gradients_accumulate_across_backward_calls(rng):
    """A leaf's .grad adds up over backward calls (until zeroed), as in PyTorch; a
    non-scalar output takes its upstream gradient as an argument."""
    x0, g = rng.standard_normal(5), rng.standard_normal(5)
    x = Tensor(x0, requires_grad=True)
    total(mul(x, x)).backward()
    total(_Scale.apply(x, c=3.0)).backward()
    assert_close(x.grad, 2 * x0 + 3.0, dtype="float64", what="accumulated gradient")
    x.zero_grad()
    mul(x, x).backward(g)
    assert_close(x.grad, 2 * x0 * g, dtype="float64", what="gradient of a vector output with an upstream gradient")
    c = Tensor(rng.standard_normal(5))          # a constant: no gradient flows into it
    total(mul(x, c)).backward()
    assert c.grad is None


@pytest.mark.points(1)
def test_no_grad_records_no_graph(rng):
    """Under no_grad nothing is recorded; afterwards (also after an exception) graphs are
    recorded again, and the tensor computed under no_grad enters them as a constant."""
    x = Tensor(rng.standard_normal(5), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = add(mul(x, x), x)
    assert is_grad_enabled()
    assert not y.requires_grad and y.history is None, "no graph may be recorded under no_grad"
    try:
        with no_grad():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert is_grad_enabled(), "no_grad must restore grad mode after an exception"
    z = add(mul(x, x), y)               # y is a constant now: only x gets a gradient
    z.backward(np.ones(5))
    assert_close(x.grad, 2 * x.data, dtype="float64", what="gradient of a graph built after no_grad")


@pytest.mark.points(1)
@pytest.mark.hidden
def test_gradients_of_intermediates_are_not_kept_and_leaves_reuse_backward(rng):
    """Two backward passes over two graphs sharing a leaf; the intermediate tensors keep
    no .grad (only leaves do), and a second graph's backward adds to the first's."""
    x0 = rng.standard_normal((2, 3))
    x = Tensor(x0, requires_grad=True)
    h = mul(x, x)
    total(h).backward()
    total(mul(h, x)).backward()
    assert h.grad is None, "only leaves keep a gradient"
    assert_close(x.grad, 2 * x0 + 3 * x0 ** 2, dtype="float64", what="accumulated gradient over two graphs")
