"""Every operation's forward and gradient against torch autograd in float64, on random
shapes with broadcasting (hypothesis), and the gradient against central finite
differences.

One parametrized case per operation, its id the operation's name: a broken backward
loses exactly that operation's points.  Each case differentiates the op alone: the
upstream gradient is a random array passed to ``backward``, so no other op is involved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlsys_labs.common.tolerance import assert_close
from mlsys_labs.nn import Tensor
from mlsys_labs.nn import functional as F
from mlsys_labs.nn.attention import scaled_dot_product_attention

# No shrinking or "explain" phase: a failure is reported as drawn (the shapes are small
# already), which keeps a failing run — a starter copy's — fast.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
SETTINGS = settings(max_examples=6, deadline=None, phases=PHASES, database=None, suppress_health_check=SUPPRESS)


@dataclass
class Case:
    """``make(data, rng)`` draws one instance: (inputs, ours, reference, differentiable)
    — inputs are float64 arrays, ``ours`` maps Tensors to a Tensor, ``reference`` maps
    torch tensors to a torch tensor, ``differentiable`` flags which inputs get gradients."""

    name: str
    make: Callable
    scale: float = 10.0   # tolerance = float64 policy × scale (accumulating ops need more)

    def __str__(self):
        return self.name


def _side(data, lo=1, hi=4):
    return data.draw(st.integers(lo, hi))


def _shape(data, min_dims=1, max_dims=3, max_side=4):
    return data.draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side))


def _pair(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4))
    return shapes.input_shapes


def _axis(data, ndim):
    """None, one axis (maybe negative) or a tuple of distinct axes."""
    kind = data.draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return data.draw(st.integers(-ndim, ndim - 1))
    return tuple(sorted(data.draw(st.sets(st.integers(0, ndim - 1), min_size=1, max_size=ndim))))


def _away_from_zero(rng, shape, lo=0.5, hi=2.0):
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


def binary(name, ours, ref, b_domain=None):
    def make(data, rng):
        sa, sb = _pair(data)
        a = rng.standard_normal(sa)
        b = b_domain(rng, sb) if b_domain else rng.standard_normal(sb)
        return [a, b], ours, ref, [True, True]
    return Case(name, make)


def unary(name, ours, ref, domain=None):
    def make(data, rng):
        s = _shape(data, min_dims=0)
        a = domain(rng, s) if domain else rng.standard_normal(s) * 2.0
        return [a], ours, ref, [True]
    return Case(name, make)


def _pow(data, rng):
    p = data.draw(st.sampled_from([2.0, 3.0, 0.5, -1.5, 1.0 / 3.0]))
    a = rng.uniform(0.5, 2.0, _shape(data, min_dims=0))
    return [a], (lambda x: x ** p), (lambda x: x ** p), [True]


def _matmul(data, rng):
    batch_a, batch_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2,
                                                                    max_side=3)).input_shapes
    m, k, n = _side(data), _side(data), _side(data)
    a = rng.standard_normal(batch_a + (m, k))
    b = rng.standard_normal(batch_b + (k, n))
    return [a, b], (lambda x, y: x @ y), (lambda x, y: x @ y), [True, True]


def reduction(name, ours, ref):
    def make(data, rng):
        s = _shape(data)
        axis, keep = _axis(data, len(s)), data.draw(st.booleans())
        dims = tuple(range(len(s))) if axis is None else axis
        return [rng.standard_normal(s)], (lambda x: ours(x, axis, keep)), (lambda x: ref(x, dims, keep)), [True]
    return Case(name, make)


def _reshape(data, rng):
    s = _shape(data)
    size = int(np.prod(s))
    target = data.draw(st.sampled_from([(-1,), tuple(reversed(s)), (s[0], -1), (1, size)]))
    return [rng.standard_normal(s)], (lambda x: x.reshape(target)), (lambda x: x.reshape(target)), [True]


def _permute(data, rng):
    s = _shape(data, min_dims=2, max_dims=4)
    axes = tuple(data.draw(st.permutations(range(len(s)))))
    return [rng.standard_normal(s)], (lambda x: x.permute(axes)), (lambda x: x.permute(axes)), [True]


def _transpose(data, rng):
    s = _shape(data, min_dims=2, max_dims=4)
    i, j = data.draw(st.integers(-len(s), len(s) - 1)), data.draw(st.integers(-len(s), len(s) - 1))
    return [rng.standard_normal(s)], (lambda x: x.transpose(i, j)), (lambda x: x.transpose(i, j)), [True]


def _slicing(data, rng):
    s = _shape(data, min_dims=1, max_dims=3, max_side=5)
    index = []
    for n in s:
        start = data.draw(st.integers(0, n - 1))
        stop = data.draw(st.integers(start + 1, n))
        step = data.draw(st.integers(1, 2))
        index.append(slice(start, stop, step))
    if data.draw(st.booleans()):   # an integer index drops an axis
        index[0] = data.draw(st.integers(-s[0], s[0] - 1))
    index = tuple(index)
    return [rng.standard_normal(s)], (lambda x: x[index]), (lambda x: x[index]), [True]


def _fancy_indexing(data, rng):
    s = _shape(data, min_dims=1, max_dims=3, max_side=5)
    rows = np.asarray(data.draw(st.lists(st.integers(0, s[0] - 1), min_size=1, max_size=7)))  # repeats
    if len(s) >= 2 and data.draw(st.booleans()):
        cols = np.asarray(data.draw(st.lists(st.integers(0, s[1] - 1), min_size=len(rows), max_size=len(rows))))
        index = (rows, cols)
        t_index = (torch.as_tensor(rows), torch.as_tensor(cols))
    else:
        index, t_index = rows, torch.as_tensor(rows)
    return [rng.standard_normal(s)], (lambda x: x[index]), (lambda x: x[t_index]), [True]


def _concatenate(data, rng):
    s = list(_shape(data, min_dims=1, max_dims=3))
    axis = data.draw(st.integers(-len(s), len(s) - 1))
    arrays = []
    for _ in range(data.draw(st.integers(1, 3))):
        s[axis] = _side(data)
        arrays.append(rng.standard_normal(s))
    return (arrays, (lambda *xs: F.concatenate(xs, axis=axis)), (lambda *xs: torch.cat(xs, dim=axis)),
            [True] * len(arrays))


def _stack(data, rng):
    s = _shape(data, min_dims=0, max_dims=3)
    axis = data.draw(st.integers(-len(s) - 1, len(s)))
    arrays = [rng.standard_normal(s) for _ in range(data.draw(st.integers(1, 3)))]
    return (arrays, (lambda *xs: F.stack(xs, axis=axis)), (lambda *xs: torch.stack(xs, dim=axis)),
            [True] * len(arrays))


def along_axis(name, ours, ref):
    def make(data, rng):
        s = _shape(data)
        axis = data.draw(st.integers(-len(s), len(s) - 1))
        a = rng.standard_normal(s) * 3.0 + data.draw(st.sampled_from([0.0, 500.0]))  # + large: stability
        return [a], (lambda x: ours(x, axis)), (lambda x: ref(x, axis)), [True]
    return Case(name, make)


def _cross_entropy(data, rng):
    n, c = _side(data, 1, 6), _side(data, 2, 6)
    targets = rng.integers(0, c, n)
    logits = rng.standard_normal((n, c)) * 3.0
    return ([logits], (lambda x: F.cross_entropy(x, targets)),
            (lambda x: TF.cross_entropy(x, torch.as_tensor(targets))), [True])


def _conv2d(data, rng):
    n, c, o = _side(data, 1, 2), _side(data, 1, 3), _side(data, 1, 3)
    k, stride, padding = _side(data, 1, 3), _side(data, 1, 2), data.draw(st.integers(0, 1))
    h, w = data.draw(st.integers(k, 7)), data.draw(st.integers(k, 7))
    with_bias = data.draw(st.booleans())
    inputs = [rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, k, k))]
    if with_bias:
        inputs.append(rng.standard_normal(o))
    return (inputs, (lambda *t: F.conv2d(*t, stride=stride, padding=padding)),
            (lambda *t: TF.conv2d(*t, stride=stride, padding=padding)), [True] * len(inputs))


def _max_pool2d(data, rng):
    k = _side(data, 1, 3)
    stride = data.draw(st.sampled_from([None, 1, 2]))
    shape = (_side(data, 1, 2), _side(data, 1, 3), data.draw(st.integers(k, 7)), data.draw(st.integers(k, 7)))
    return ([rng.standard_normal(shape)], (lambda x: F.max_pool2d(x, k, stride)),
            (lambda x: TF.max_pool2d(x, k, stride if stride else k)), [True])


def _layer_norm(data, rng):
    s = _shape(data, min_dims=1, max_dims=3)
    s = s[:-1] + (max(2, s[-1]),)
    d = s[-1]
    inputs = [rng.standard_normal(s) * 2 + 1, rng.standard_normal(d), rng.standard_normal(d)]
    return (inputs, (lambda x, w, b: F.layer_norm(x, w, b, 1e-5)),
            (lambda x, w, b: TF.layer_norm(x, (d,), w, b, 1e-5)), [True] * 3)


def _batch_norm(data, rng):
    c = _side(data, 1, 3)
    shape = (_side(data, 2, 4), c) + ((_side(data, 1, 3), _side(data, 1, 3)) if data.draw(st.booleans()) else ())
    inputs = [rng.standard_normal(shape) * 2 + 1, rng.standard_normal(c), rng.standard_normal(c)]
    return (inputs, (lambda x, w, b: F.batch_norm(x, w, b, 1e-5)),
            (lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True, eps=1e-5)), [True] * 3)


def _batch_norm_running(data, rng):
    c = _side(data, 1, 3)
    shape = (_side(data, 1, 4), c) + ((_side(data, 1, 3), _side(data, 1, 3)) if data.draw(st.booleans()) else ())
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    inputs = [rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)]
    return (inputs, (lambda x, w, b: F.batch_norm(x, w, b, 1e-5, mean=mean, var=var)),
            (lambda x, w, b: TF.batch_norm(x, torch.as_tensor(mean), torch.as_tensor(var), w, b,
                                           training=False, eps=1e-5)), [True] * 3)


def _embedding(data, rng):
    v, d = _side(data, 1, 6), _side(data, 1, 4)
    ids = rng.integers(0, v, _shape(data, min_dims=1, max_dims=2, max_side=5))
    return ([rng.standard_normal((v, d))], (lambda w: F.embedding(w, ids)),
            (lambda w: TF.embedding(torch.as_tensor(ids), w)), [True])


def _attention(data, rng):
    batch = _shape(data, min_dims=0, max_dims=2, max_side=2)
    causal = data.draw(st.booleans())
    tq = _side(data, 1, 5)
    tk = tq if causal else _side(data, 1, 5)
    d, dv = _side(data, 1, 4), _side(data, 1, 4)
    inputs = [rng.standard_normal(batch + (tq, d)), rng.standard_normal(batch + (tk, d)),
              rng.standard_normal(batch + (tk, dv))]
    return (inputs, (lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal)),
            (lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=causal)), [True] * 3)


CASES = [
    binary("add", lambda a, b: a + b, lambda a, b: a + b),
    binary("sub", lambda a, b: a - b, lambda a, b: a - b),
    binary("mul", lambda a, b: a * b, lambda a, b: a * b),
    binary("div", lambda a, b: a / b, lambda a, b: a / b, b_domain=_away_from_zero),
    unary("neg", lambda a: -a, lambda a: -a),
    Case("pow", _pow),
    unary("exp", F.exp, torch.exp),
    unary("log", F.log, torch.log, domain=lambda rng, s: rng.uniform(0.1, 3.0, s)),
    unary("tanh", F.tanh, torch.tanh),
    unary("sigmoid", F.sigmoid, torch.sigmoid, domain=lambda rng, s: rng.standard_normal(s) * 5.0),
    unary("relu", F.relu, torch.relu),
    unary("gelu", F.gelu, TF.gelu),
    Case("matmul", _matmul),
    reduction("sum", lambda x, ax, kd: x.sum(axis=ax, keepdims=kd), lambda x, d, kd: x.sum(dim=d, keepdim=kd)),
    reduction("mean", lambda x, ax, kd: x.mean(axis=ax, keepdims=kd), lambda x, d, kd: x.mean(dim=d, keepdim=kd)),
    reduction("max", lambda x, ax, kd: x.max(axis=ax, keepdims=kd), lambda x, d, kd: x.amax(dim=d, keepdim=kd)),
    Case("reshape", _reshape),
    Case("permute", _permute),
    Case("transpose", _transpose),
    Case("slicing", _slicing),
    Case("fancy_indexing", _fancy_indexing),
    Case("concatenate", _concatenate),
    Case("stack", _stack),
    along_axis("softmax", F.softmax, lambda x, ax: torch.softmax(x, dim=ax)),
    along_axis("log_softmax", F.log_softmax, lambda x, ax: torch.log_softmax(x, dim=ax)),
    Case("cross_entropy", _cross_entropy),
    Case("conv2d", _conv2d, scale=100.0),
    Case("max_pool2d", _max_pool2d),
    Case("layer_norm", _layer_norm, scale=1000.0),
    Case("batch_norm", _batch_norm, scale=1000.0),
    Case("batch_norm_running_stats", _batch_norm_running, scale=100.0),
    Case("embedding", _embedding),
    Case("attention", _attention, scale=100.0),
]


def _run_ours(inputs, ours, upstream_rng):
    tensors = [Tensor(a.copy(), requires_grad=True) for a in inputs]
    out = ours(*tensors)
    grad_out = upstream_rng.standard_normal(out.shape)
    out.backward(grad_out)
    return out, tensors, grad_out


@pytest.mark.points(1)
@pytest.mark.parametrize("case", CASES, ids=str)
@SETTINGS
@given(data=st.data())
def test_forward_and_gradient_match_torch(case, data, rng):
    inputs, ours, reference, differentiable = case.make(data, rng)
    inputs = [np.array(a, dtype=np.float64) for a in inputs]
    out, tensors, grad_out = _run_ours(inputs, ours, rng)
    t_inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=d) for a, d in zip(inputs, differentiable)]
    t_out = reference(*t_inputs)
    assert_close(out.data, t_out, dtype="float64", scale=case.scale, what=f"{case.name} forward")
    assert out.dtype == np.float64, f"{case.name}: float64 in, {out.dtype} out"
    t_out.backward(torch.as_tensor(grad_out))
    for i, (t, tt) in enumerate(zip(tensors, t_inputs)):
        assert t.grad is not None, f"{case.name}: input {i} got no gradient"
        assert_close(t.grad, tt.grad, dtype="float64", scale=case.scale, what=f"{case.name} d/d(input {i})")


def _numerical_gradient(f, inputs, i, grad_out, h=1e-6):
    """Central differences of L = Σ f(inputs) · grad_out with respect to inputs[i]."""
    x = inputs[i]
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        up = np.sum(f(inputs) * grad_out)
        x[idx] = old - h
        down = np.sum(f(inputs) * grad_out)
        x[idx] = old
        grad[idx] = (up - down) / (2 * h)
    return grad


@pytest.mark.points(0.5)
@pytest.mark.parametrize("case", CASES, ids=str)
@settings(max_examples=2, deadline=None, phases=PHASES, database=None, suppress_health_check=SUPPRESS)
@given(data=st.data())
def test_gradient_matches_finite_differences(case, data, rng):
    inputs, ours, _, _ = case.make(data, rng)
    inputs = [np.array(a, dtype=np.float64) for a in inputs]
    out, tensors, grad_out = _run_ours(inputs, ours, rng)

    def f(arrays):
        return ours(*[Tensor(a) for a in arrays]).data

    for i, t in enumerate(tensors):
        numerical = _numerical_gradient(f, [np.array(a) for a in inputs], i, grad_out)
        assert_close(t.grad, numerical, rtol=1e-5, atol=1e-6, what=f"{case.name} d/d(input {i}) vs finite differences")


@pytest.mark.points(1)
def test_dropout_masks_scales_and_backpropagates(rng):
    """Inverted dropout: survivors scaled by 1/(1-p), about a fraction p zeroed, the same
    mask in backward, identity in evaluation (torch applied with the same mask is the reference)."""
    p = float(rng.uniform(0.2, 0.6))
    x = rng.standard_normal((64, 50)) + 3.0   # nonzero, so zeros in the output are dropped elements
    xt = Tensor(x.copy(), requires_grad=True)
    out = F.dropout(xt, p, np.random.default_rng(int(rng.integers(2**31))))
    keep = out.data != 0
    assert abs((~keep).mean() - p) < 0.05, f"dropped fraction {(~keep).mean():.3f}, expected {p:.3f}"
    reference = torch.tensor(x, requires_grad=True)
    ref_out = reference * torch.as_tensor(keep) / (1 - p)
    assert_close(out.data, ref_out, dtype="float64", what="dropout forward")
    g = rng.standard_normal(x.shape)
    out.backward(g)
    ref_out.backward(torch.as_tensor(g))
    assert_close(xt.grad, reference.grad, dtype="float64", what="dropout gradient")
    again = F.dropout(Tensor(x), p, np.random.default_rng(0), training=False)
    assert_close(again.data, x, dtype="float64", what="dropout in evaluation (identity)")
