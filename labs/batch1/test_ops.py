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
from mlsys_labs.nn import Tensor, scaled_dot_product_attention
from mlsys_labs.nn import functional as F

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
    step: int             # the README step that writes this operation
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
    return Case(name, make, 2)


def unary(name, ours, ref, domain=None):
    def make(data, rng):
        s = _shape(data, min_dims=0)
        a = domain(rng, s) if domain else rng.standard_normal(s) * 2.0
        return [a], ours, ref, [True]
    return Case(name, make, 2)


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
    return Case(name, make, 3)


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
        a = rng.standard_normal(s) * 3.0 + data.draw(st.sampled_from([0.0, 1000.0, -1000.0]))  # stability
        return [a], (lambda x: ours(x, axis)), (lambda x: ref(x, axis)), [True]
    return Case(name, make, 4)


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
    Case("pow", _pow, 2),
    unary("exp", F.exp, torch.exp),
    unary("log", F.log, torch.log, domain=lambda rng, s: rng.uniform(0.1, 3.0, s)),
    unary("tanh", F.tanh, torch.tanh),
    unary("sigmoid", F.sigmoid, torch.sigmoid, domain=lambda rng, s: rng.standard_normal(s) * 5.0),
    unary("relu", F.relu, torch.relu),
    unary("gelu", F.gelu, TF.gelu),
    Case("matmul", _matmul, 3),
    reduction("sum", lambda x, ax, kd: x.sum(axis=ax, keepdims=kd), lambda x, d, kd: x.sum(dim=d, keepdim=kd)),
    reduction("mean", lambda x, ax, kd: x.mean(axis=ax, keepdims=kd), lambda x, d, kd: x.mean(dim=d, keepdim=kd)),
    reduction("max", lambda x, ax, kd: x.max(axis=ax, keepdims=kd), lambda x, d, kd: x.amax(dim=d, keepdim=kd)),
    Case("reshape", _reshape, 3),
    Case("permute", _permute, 3),
    Case("transpose", _transpose, 3),
    Case("slicing", _slicing, 3),
    Case("fancy_indexing", _fancy_indexing, 3),
    Case("concatenate", _concatenate, 3),
    Case("stack", _stack, 3),
    along_axis("softmax", F.softmax, lambda x, ax: torch.softmax(x, dim=ax)),
    along_axis("log_softmax", F.log_softmax, lambda x, ax: torch.log_softmax(x, dim=ax)),
    Case("cross_entropy", _cross_entropy, 4),
    Case("conv2d", _conv2d, 5, scale=100.0),
    Case("max_pool2d", _max_pool2d, 5),
    Case("layer_norm", _layer_norm, 6, scale=1000.0),
    Case("batch_norm", _batch_norm, 6, scale=1000.0),
    Case("batch_norm_running_stats", _batch_norm_running, 6, scale=100.0),
    Case("embedding", _embedding, 6),
    Case("attention", _attention, 8, scale=100.0),
]


PARAMS = [pytest.param(c, id=c.name, marks=pytest.mark.step(c.step)) for c in CASES]


def _run_ours(inputs, ours, upstream_rng):
    tensors = [Tensor(a.copy(), requires_grad=True) for a in inputs]
    out = ours(*tensors)
    grad_out = upstream_rng.standard_normal(out.shape)
    out.backward(grad_out.copy())
    return out, tensors, grad_out


def _check_against_torch(name, inputs, ours, reference, differentiable, rng, scale):
    """Forward and every input's gradient against torch in float64; the inputs must come
    out unchanged (no in-place arithmetic on a caller's array)."""
    inputs = [np.array(a, dtype=np.float64) for a in inputs]
    out, tensors, grad_out = _run_ours(inputs, ours, rng)
    t_inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=d) for a, d in zip(inputs, differentiable)]
    t_out = reference(*t_inputs)
    assert_close(out.data, t_out, dtype="float64", scale=scale, what=f"{name} forward")
    assert out.dtype == np.float64, f"{name}: float64 in, {out.dtype} out"
    t_out.backward(torch.as_tensor(grad_out))
    for i, (t, tt, a) in enumerate(zip(tensors, t_inputs, inputs)):
        assert np.array_equal(t.data, a), f"{name}: input {i} was modified in place"
        if not differentiable[i]:
            continue
        assert t.grad is not None, f"{name}: input {i} got no gradient"
        assert_close(t.grad, tt.grad, dtype="float64", scale=scale, what=f"{name} d/d(input {i})")


@pytest.mark.points(1)
@pytest.mark.parametrize("case", PARAMS)
@SETTINGS
@given(data=st.data())
def test_forward_and_gradient_match_torch(case, data, rng):
    inputs, ours, reference, differentiable = case.make(data, rng)
    _check_against_torch(case.name, inputs, ours, reference, differentiable, rng, case.scale)


# ---------------------------------------------------------------------------------------
# Planted cases: the inputs every implementation must handle, built deterministically
# (not left to the draw): ties, zeros at a kink, logits in the thousands, batch axes that
# broadcast, non-divisible sizes, overlapping windows, repeated indices, every axis.

@dataclass
class Planted:
    name: str
    step: int
    make: Callable            # rng -> (inputs, ours, reference, differentiable)
    scale: float = 10.0
    strict: bool = False      # overflow / invalid / divide-by-zero in numpy is an error
    float32: bool = True      # also run in float32: every output and gradient stays float32

    def __str__(self):
        return self.name


def _ties(rng, shape, levels=3):
    """Small integers as floats: every reduction window holds ties of its maximum."""
    return rng.integers(0, levels, shape).astype(np.float64)


def _huge(rng, shape):
    """Logits in the thousands (exp overflows past 709.8), a different offset per row."""
    offsets = np.array([2000.0, -2000.0, 800.0, 0.0, -900.0])[:shape[0], None]
    return rng.standard_normal(shape) * 30.0 + offsets.reshape((shape[0],) + (1,) * (len(shape) - 1))


def _simple(ours, ref, *arrays, grads=None):
    return list(arrays), ours, ref, grads or [True] * len(arrays)


def _max_ties(axis, keep):
    dims = axis if axis is not None else (0, 1, 2)
    return lambda rng: _simple(lambda x: x.max(axis=axis, keepdims=keep),
                               lambda x: x.amax(dim=dims, keepdim=keep), _ties(rng, (3, 4, 5)))


def _conv_case(n, c, o, h, w, k, stride, padding, bias=True):
    def make(rng):
        arrays = [rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, k, k))]
        if bias:
            arrays.append(rng.standard_normal(o))
        return _simple(lambda *t: F.conv2d(*t, stride=stride, padding=padding),
                       lambda *t: TF.conv2d(*t, stride=stride, padding=padding), *arrays)
    return make


def _pool_case(shape, k, stride, ties):
    def make(rng):
        x = _ties(rng, shape) if ties else rng.standard_normal(shape)
        return _simple(lambda t: F.max_pool2d(t, k, stride), lambda t: TF.max_pool2d(t, k, stride or k), x)
    return make


def _attention_case(batch, tq, tk, d, dv, causal, with_mask=False):
    def make(rng):
        q, k, v = (rng.standard_normal(batch + (tq, d)), rng.standard_normal(batch + (tk, d)),
                   rng.standard_normal(batch + (tk, dv)))
        mask = rng.standard_normal((tq, tk)) if with_mask else None
        # query i sees key j iff j ≤ i + (tk − tq) (the last query sees every key)
        visible = np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq)
        full = np.where(visible | (not causal), 0.0, -np.inf) + (mask if mask is not None else 0.0)
        t_mask = torch.as_tensor(full)
        return _simple(lambda a, b, c: scaled_dot_product_attention(a, b, c, causal=causal, mask=mask),
                       lambda a, b, c: TF.scaled_dot_product_attention(a, b, c, attn_mask=t_mask), q, k, v)
    return make


def _ce(logits_fn, n, c):
    def make(rng):
        targets = np.arange(n) % c           # every class, repeats when n > c
        rng.shuffle(targets)
        return _simple(lambda x: F.cross_entropy(x, targets),
                       lambda x: TF.cross_entropy(x, torch.as_tensor(targets)), logits_fn(rng, (n, c)))
    return make


PLANTED = [
    # step 2: elementwise
    Planted("relu_at_zero", 2, lambda rng: _simple(F.relu, torch.relu,
                                                   np.array([[-1.5, 0.0, 2.0], [0.0, 0.25, -0.0]]))),
    Planted("sigmoid_huge", 2, lambda rng: _simple(F.sigmoid, torch.sigmoid,
                                                   np.array([-1000.0, -745.0, -40.0, 0.0, 40.0, 745.0, 1000.0])),
            strict=True),
    Planted("tanh_large", 2, lambda rng: _simple(F.tanh, torch.tanh, np.array([-800.0, -20.0, 0.0, 20.0, 800.0])),
            strict=True),
    Planted("div_broadcast", 2, lambda rng: _simple(lambda a, b: a / b, lambda a, b: a / b,
                                                    rng.standard_normal((3, 1, 4)), _away_from_zero(rng, (2, 4)))),
    Planted("pow_negative_fractional", 2, lambda rng: _simple(lambda a: a ** -1.5, lambda a: a ** -1.5,
                                                              rng.uniform(0.5, 2.0, (2, 3)))),
    # step 3: matmul, reductions, shapes
    Planted("matmul_batched_broadcast", 3, lambda rng: _simple(lambda a, b: a @ b, lambda a, b: a @ b,
                                                               rng.standard_normal((2, 1, 3, 4)),
                                                               rng.standard_normal((5, 4, 2)))),
    Planted("matmul_2d", 3, lambda rng: _simple(lambda a, b: a @ b, lambda a, b: a @ b,
                                                rng.standard_normal((3, 4)), rng.standard_normal((4, 5)))),
    Planted("sum_axes_0_2", 3, lambda rng: _simple(lambda x: x.sum(axis=(0, 2)), lambda x: x.sum(dim=(0, 2)),
                                                   rng.standard_normal((3, 4, 5)))),
    Planted("sum_negative_axis_keepdims", 3, lambda rng: _simple(lambda x: x.sum(axis=-2, keepdims=True),
                                                                 lambda x: x.sum(dim=-2, keepdim=True),
                                                                 rng.standard_normal((3, 4, 5)))),
    Planted("mean_axis_1", 3, lambda rng: _simple(lambda x: x.mean(axis=1), lambda x: x.mean(dim=1),
                                                  rng.standard_normal((3, 4, 5)))),
    Planted("mean_axes_0_2_keepdims", 3, lambda rng: _simple(lambda x: x.mean(axis=(0, 2), keepdims=True),
                                                             lambda x: x.mean(dim=(0, 2), keepdim=True),
                                                             rng.standard_normal((3, 4, 5)))),
    Planted("max_ties_axis_1", 3, _max_ties(1, False)),
    Planted("max_ties_axes_0_2_keepdims", 3, _max_ties((0, 2), True)),
    Planted("max_ties_all", 3, _max_ties(None, False)),
    Planted("permute_cycle", 3, lambda rng: _simple(lambda x: x.permute(1, 2, 0), lambda x: x.permute(1, 2, 0),
                                                    rng.standard_normal((2, 3, 4)))),
    Planted("transpose_outer", 3, lambda rng: _simple(lambda x: x.transpose(0, 2), lambda x: x.transpose(0, 2),
                                                      rng.standard_normal((2, 3, 4)))),
    Planted("fancy_repeated_rows", 3, lambda rng: _simple(lambda x: x[np.array([0, 2, 0, 0, 1])],
                                                          lambda x: x[torch.tensor([0, 2, 0, 0, 1])],
                                                          rng.standard_normal((3, 4)))),
    Planted("fancy_repeated_pairs", 3, lambda rng: _simple(
        lambda x: x[np.array([1, 1, 0, 1]), np.array([2, 2, 0, 3])],
        lambda x: x[torch.tensor([1, 1, 0, 1]), torch.tensor([2, 2, 0, 3])], rng.standard_normal((2, 4)))),
    Planted("slicing_steps_and_int", 3, lambda rng: _simple(lambda x: x[1:, ::2, -1], lambda x: x[1:, ::2, -1],
                                                            rng.standard_normal((3, 5, 4)))),
    Planted("concatenate_unequal", 3, lambda rng: _simple(
        lambda *xs: F.concatenate(xs, axis=1), lambda *xs: torch.cat(xs, dim=1),
        rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 3, 3)), rng.standard_normal((2, 2, 3)))),
    Planted("stack_axis_1", 3, lambda rng: _simple(lambda *xs: F.stack(xs, axis=1), lambda *xs: torch.stack(xs, dim=1),
                                                   *[rng.standard_normal((2, 3)) for _ in range(3)])),
    Planted("stack_axis_-1", 3, lambda rng: _simple(lambda *xs: F.stack(xs, axis=-1),
                                                    lambda *xs: torch.stack(xs, dim=-1),
                                                    *[rng.standard_normal((2, 3)) for _ in range(2)])),
    # step 4: softmax, log-softmax, cross-entropy
    Planted("softmax_huge_logits", 4, lambda rng: _simple(F.softmax, lambda x: torch.softmax(x, -1),
                                                          _huge(rng, (5, 6))), strict=True),
    Planted("softmax_huge_axis_0", 4, lambda rng: _simple(lambda x: F.softmax(x, axis=0),
                                                          lambda x: torch.softmax(x, 0),
                                                          _huge(rng, (5, 3, 2))), strict=True),
    Planted("log_softmax_huge_logits", 4, lambda rng: _simple(F.log_softmax, lambda x: torch.log_softmax(x, -1),
                                                              _huge(rng, (5, 6))), strict=True, scale=100.0),
    Planted("log_softmax_axis_0", 4, lambda rng: _simple(lambda x: F.log_softmax(x, axis=0),
                                                         lambda x: torch.log_softmax(x, 0),
                                                         rng.standard_normal((4, 3, 2)))),
    Planted("cross_entropy_huge_logits", 4, _ce(_huge, 5, 4), strict=True, scale=100.0),
    Planted("cross_entropy_batch_7", 4, _ce(lambda rng, s: rng.standard_normal(s) * 3.0, 7, 3)),
    # step 5: convolution and pooling (odd sizes, strides that do not divide, overlaps)
    Planted("conv2d_stride2_pad1_odd", 5, _conv_case(2, 3, 4, 7, 6, 3, 2, 1), scale=100.0),
    Planted("conv2d_overlapping_pad1", 5, _conv_case(1, 2, 3, 5, 6, 3, 1, 1, bias=False), scale=100.0),
    Planted("conv2d_1x1_stride2", 5, _conv_case(2, 3, 2, 5, 4, 1, 2, 0), scale=100.0),
    Planted("conv2d_stride3_ragged", 5, _conv_case(1, 2, 2, 8, 7, 2, 3, 1), scale=100.0),
    Planted("max_pool_ties_overlapping", 5, _pool_case((2, 2, 6, 5), 3, 1, ties=True)),
    Planted("max_pool_ties_stride2_k3", 5, _pool_case((1, 2, 7, 7), 3, 2, ties=True)),
    Planted("max_pool_odd_default_stride", 5, _pool_case((2, 3, 7, 5), 2, None, ties=False)),
    # step 6: normalization, embedding
    Planted("layer_norm_3d", 6, lambda rng: _simple(
        lambda x, w, b: F.layer_norm(x, w, b, 1e-5), lambda x, w, b: TF.layer_norm(x, (5,), w, b, 1e-5),
        rng.standard_normal((2, 3, 5)) * 3 + 2, rng.standard_normal(5), rng.standard_normal(5)), scale=1000.0),
    Planted("batch_norm_4d", 6, lambda rng: _simple(
        lambda x, w, b: F.batch_norm(x, w, b, 1e-5),
        lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True, eps=1e-5),
        rng.standard_normal((3, 2, 4, 5)) * 2 + 1, rng.standard_normal(2), rng.standard_normal(2)), scale=1000.0),
    Planted("batch_norm_running_4d", 6, lambda rng: _simple(
        lambda x, w, b: F.batch_norm(x, w, b, 1e-5, mean=np.array([0.5, -1.0, 2.0]), var=np.array([0.5, 2.0, 1.5])),
        lambda x, w, b: TF.batch_norm(x, torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64),
                                      torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64), w, b,
                                      training=False, eps=1e-5),
        rng.standard_normal((2, 3, 2, 4)), rng.standard_normal(3), rng.standard_normal(3)), scale=100.0,
        float32=False),   # its given statistics are float64
    Planted("embedding_repeated_ids", 6, lambda rng: _simple(
        lambda w: F.embedding(w, np.array([[0, 2, 0], [2, 2, 1]])),
        lambda w: TF.embedding(torch.tensor([[0, 2, 0], [2, 2, 1]]), w), rng.standard_normal((4, 3)))),
    # step 8: attention (composed)
    Planted("attention_causal_batched", 8, _attention_case((2, 3), 5, 5, 3, 2, causal=True), scale=100.0),
    Planted("attention_cross_lengths", 8, _attention_case((2,), 3, 6, 4, 2, causal=False), scale=100.0),
    Planted("attention_causal_fewer_queries", 8, _attention_case((2,), 3, 5, 4, 3, causal=True), scale=100.0),
    Planted("attention_causal_and_mask", 8, _attention_case((2,), 4, 4, 3, 5, causal=True, with_mask=True),
            scale=100.0),
]


@pytest.mark.points(0.5)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=pytest.mark.step(c.step)) for c in PLANTED])
def test_planted_case_matches_torch(case, rng):
    inputs, ours, reference, differentiable = case.make(rng)
    with np.errstate(**({"over": "raise", "invalid": "raise", "divide": "raise"} if case.strict else {})):
        _check_against_torch(case.name, inputs, ours, reference, differentiable, rng, case.scale)
        if case.float32:
            _check_float32(case.name, inputs, ours, differentiable, rng)


def _check_float32(name, inputs, ours, differentiable, rng):
    """float32 in, float32 out — the output and every gradient (no silent upcast to
    float64 in a float32 network), and finite."""
    tensors = [Tensor(np.asarray(a, dtype=np.float32), requires_grad=d) for a, d in zip(inputs, differentiable)]
    out = ours(*tensors)
    assert out.dtype == np.float32, f"{name}: float32 in, {out.dtype} out"
    out.backward(rng.standard_normal(out.shape).astype(np.float32))
    for i, t in enumerate(tensors):
        if differentiable[i]:
            assert t.grad is not None and t.grad.dtype == np.float32, \
                f"{name}: float32 input {i} got a {getattr(t.grad, 'dtype', None)} gradient"
            assert np.all(np.isfinite(t.grad)), f"{name}: float32 gradient of input {i} is not finite"


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
@pytest.mark.parametrize("case", PARAMS)
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
@pytest.mark.step(6)
@pytest.mark.parametrize("p", [0.3, 0.75])
def test_dropout_masks_scales_and_backpropagates(rng, p):
    """Inverted dropout: survivors scaled by 1/(1-p), a fraction p zeroed (within 8
    standard errors), the same mask in backward, identity in evaluation (torch applied
    with the same mask is the reference)."""
    x = rng.standard_normal((100, 80)) + 3.0   # nonzero, so zeros in the output are dropped elements
    xt = Tensor(x.copy(), requires_grad=True)
    out = F.dropout(xt, p, np.random.default_rng(int(rng.integers(2**31))))
    keep = out.data != 0
    assert abs((~keep).mean() - p) < 8 * np.sqrt(p * (1 - p) / x.size), \
        f"dropped fraction {(~keep).mean():.3f}, expected {p:.3f}"
    reference = torch.tensor(x, requires_grad=True)
    ref_out = reference * torch.as_tensor(keep) / (1 - p)
    assert_close(out.data, ref_out, dtype="float64", what="dropout forward")
    assert np.array_equal(xt.data, x), "dropout modified its input in place"
    g = rng.standard_normal(x.shape)
    out.backward(g)
    ref_out.backward(torch.as_tensor(g))
    assert_close(xt.grad, reference.grad, dtype="float64", what="dropout gradient")
    again = F.dropout(Tensor(x), p, np.random.default_rng(0), training=False)
    assert_close(again.data, x, dtype="float64", what="dropout in evaluation (identity)")
    x32 = Tensor(x.astype(np.float32), requires_grad=True)
    out32 = F.dropout(x32, p, np.random.default_rng(1))
    out32.backward(g.astype(np.float32))
    assert out32.dtype == np.float32 and x32.grad.dtype == np.float32, \
        f"float32 in: {out32.dtype} out, {x32.grad.dtype} gradient (a float64 mask upcasts the network)"
