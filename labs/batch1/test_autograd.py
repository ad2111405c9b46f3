"""The engine: the backward pass over a graph (topological order, accumulation into
tensors used more than once, broadcasting), no-grad mode, and leaves' gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.extra import numpy as hnp

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.nn import Tensor, is_grad_enabled, no_grad
from mlsys_labs.nn.tensor import topological_order, unbroadcast


@pytest.mark.points(1)
@settings(max_examples=25, deadline=None, phases=(Phase.explicit, Phase.generate), database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4))
def test_unbroadcast_sums_to_the_input_shape(shapes, rng):
    """unbroadcast(g, s) is the gradient of broadcast_to(x, g.shape) for x of shape s."""
    for shape in shapes.input_shapes:
        g = rng.standard_normal(shapes.result_shape)
        x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        x.expand(shapes.result_shape).backward(torch.as_tensor(g))
        assert_close(unbroadcast(g, shape), x.grad, dtype="float64", scale=10, what=f"unbroadcast to {shape}")


@pytest.mark.points(1)
def test_shared_subexpressions_accumulate(rng):
    """y = (a·b + a)·(a·b) uses a three times and a·b twice: gradients must add up."""
    a0, b0 = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
    ab = a * b
    y = ((ab + a) * ab).sum()
    y.backward()
    ta, tb = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    tab = ta * tb
    ((tab + ta) * tab).sum().backward()
    assert_close(y.data, ((tab + ta) * tab).sum(), dtype="float64", scale=10, what="value")
    assert_close(a.grad, ta.grad, dtype="float64", scale=10, what="d/da")
    assert_close(b.grad, tb.grad, dtype="float64", scale=10, what="d/db (broadcast)")


@pytest.mark.points(1)
def test_topological_order_puts_inputs_first_and_handles_deep_graphs(rng):
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    h = x
    for _ in range(3000):          # deeper than Python's recursion limit
        h = h * 1.0001 + x
    order = topological_order(h)
    position = {id(t): i for i, t in enumerate(order)}
    assert order[-1] is h and position[id(x)] == 0
    for t in order:
        if t._node is not None:
            for parent in t._node[2]:
                if isinstance(parent, Tensor) and parent.requires_grad:
                    assert position[id(parent)] < position[id(t)], "an input comes after its output"
    h.sum().backward()
    expected = sum(1.0001 ** k for k in range(3001))   # h = x·Σ 1.0001^k
    assert_close(x.grad, np.full(3, expected), dtype="float64", scale=1e4, what="gradient through 3000 steps")


@pytest.mark.points(1)
@pytest.mark.hidden
def test_gradients_accumulate_across_backward_calls_and_no_grad(rng):
    x0 = rng.standard_normal(5)
    x = Tensor(x0, requires_grad=True)
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    assert_close(x.grad, 2 * x0 + 3.0, dtype="float64", what="accumulated gradient")
    with no_grad():
        assert not is_grad_enabled()
        y = x * x + 1.0
    assert is_grad_enabled()
    assert not y.requires_grad and y._node is None, "no graph may be recorded under no_grad"
    try:
        with no_grad():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert is_grad_enabled(), "no_grad must restore grad mode after an exception"
    c = Tensor(rng.standard_normal(5))          # a constant: no gradient flows into it
    (x * c).sum().backward()
    assert c.grad is None
