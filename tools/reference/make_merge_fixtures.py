#!/usr/bin/env python3
"""Float64 reference results of the model-merging methods, written from the papers and mergekit's documentation.

Each case is one tensor: the base model's values (when the method has a base), the other models' values, their
parameters, the merge's parameters, and the expected result. Inputs are rounded to float32 first (what Hone reads from a
checkpoint), the formulas then run in float64.

- linear (model soups): sum_i w_i x_i, divided by sum_i w_i with normalize.
- slerp (Shoemake): the tensors taken as flat vectors, theta = arccos of the cosine of their directions; when the
  |cosine| exceeds 0.9995 mergekit falls back to linear interpolation (1-t) v0 + t v1.
- task arithmetic (Ilharco et al.): base + lambda * sum_i w_i tau_i, tau_i = x_i - base, / sum_i w_i with normalize.
- TIES (Yadav et al.): tau_i trimmed to its top round-down(density * n) magnitudes; the elected sign of an element is the
  sign of sum_i w_i tau_i (positive when 0); the deltas w_i tau_i of that sign (zeros excluded) are summed and, with
  normalize, divided by the sum of their w_i (1 when none); times lambda, plus base.
- DARE at density 1 (no element dropped: the random drops are tested statistically in C#).
- Model Breadcrumbs (Davari & Belilovsky): tau_i keeps the elements ranked (by magnitude, ascending) between the
  smallest n - keep - top and the largest top = round-down(gamma * n), keep = round-down(density * n), fewer outliers
  dropped if the two do not fit; then task arithmetic (or TIES' election for breadcrumbs_ties).
- Model Stock (Jang et al.): t = N cos / (1 + (N-1) cos), result = t * mean_i(x_i) + (1-t) * base, cos the mean over
  model pairs of the cosine between (x_i - base) and (x_j - base), per row of a matrix and over the whole tensor for
  embeddings, as mergekit computes it (norm products below 1e-6 count as 1e-6); over the whole of a vector (mergekit's
  per-element cosine of a vector is +-1, and -1 with two models divides by zero).
- Gradients: a list of n values is read at layer l of L at position x = l/(L-1) * (n-1), linearly interpolated.

Run:  /usr/bin/python3 tools/reference/make_merge_fixtures.py tests/Hone.Tests/Fixtures/merging
"""
import json, os, sys
import numpy as np

rng = np.random.default_rng(20261207)


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def rand(shape, scale=1.0):
    return f32(rng.standard_normal(shape) * scale)


def linear(models, weights, normalize):
    total = np.zeros_like(models[0])
    for w, x in zip(weights, models):
        total += w * x
    return total / np.sum(weights) if normalize else total


def slerp(t, v0, v1):
    a, b = v0.ravel(), v1.ravel()
    na, nb = np.sqrt(np.dot(a, a)), np.sqrt(np.dot(b, b))
    ua = a / na if na > 1e-8 else a
    ub = b / nb if nb > 1e-8 else b
    cos = float(np.dot(ua, ub))
    if abs(cos) > 0.9995:
        return (1 - t) * v0 + t * v1
    omega = np.arccos(cos)
    return (np.sin((1 - t) * omega) * v0 + np.sin(t * omega) * v1) / np.sin(omega)


def keep_ranks(tau, keep_from, keep_to):
    """Zero tau except the elements whose ascending magnitude rank r has keep_from <= r < keep_to."""
    flat = tau.ravel().copy()
    order = np.argsort(np.abs(flat), kind="stable")
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[keep_from:keep_to]] = True
    flat[~mask] = 0
    return flat.reshape(tau.shape)


def trim_top(tau, density):
    if density >= 1:
        return tau
    k = int(density * tau.size)
    return keep_ranks(tau, tau.size - k, tau.size)


def breadcrumbs(tau, density, gamma):
    if density >= 1:
        return tau
    n = tau.size
    keep, top = int(density * n), int(gamma * n)
    bottom = n - keep - top
    if bottom < 0:
        top += bottom
        bottom = 0
    return keep_ranks(tau, bottom, n - top)


def combine(base, taus, weights, elect, normalize, lam):
    weighted = [w * t for w, t in zip(weights, taus)]
    if elect:
        total = sum(weighted)
        sign = np.where(total >= 0, 1.0, -1.0)
        mixed = np.zeros_like(base)
        divisor = np.zeros_like(base)
        for w, wt in zip(weights, weighted):
            agree = np.sign(wt) == sign
            mixed += np.where(agree, wt, 0.0)
            divisor += np.where(agree, w, 0.0)
        divisor[divisor == 0] = 1
    else:
        mixed = sum(weighted)
        s = float(np.sum(weights))
        divisor = 1.0 if abs(s) < 1e-8 else s
    if normalize:
        mixed = mixed / divisor
    return base + lam * mixed


def model_stock(base, models, embedding):
    n = len(models)
    if embedding or base.ndim == 1:
        shaped = [m.reshape(1, -1) for m in models]
        b = base.reshape(1, -1)
    else:
        shaped = [m.reshape(m.shape[0], -1) for m in models]
        b = base.reshape(base.shape[0], -1)
    out = np.zeros_like(b)
    offsets = [m - b for m in shaped]
    for r in range(b.shape[0]):
        cosines = []
        for i in range(n):
            for j in range(i + 1, n):
                x, y = offsets[i][r], offsets[j][r]
                cosines.append(np.clip(np.dot(x, y) / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-6), -1, 1))
        c = np.mean(cosines)
        t = n * c / (1 + (n - 1) * c)
        out[r] = t * np.mean([m[r] for m in shaped], axis=0) + (1 - t) * b[r]
    return out.reshape(base.shape)


def gradient(values, layer, layers):
    pos = layer / (layers - 1) if layers > 1 else 1.0
    return float(np.interp(pos * (len(values) - 1), np.arange(len(values)), values))


cases = []


def case(name, method, models, model_params, params, expected, base=None, tensor="model.layers.0.mlp.up_proj.weight", embedding=False):
    shape = models[0].shape
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    cases.append({
        "name": name, "method": method, "tensor": tensor, "rows": int(rows), "cols": int(cols), "embedding": embedding,
        "base": None if base is None else base.ravel().tolist(),
        "models": [m.ravel().tolist() for m in models],
        "model_parameters": model_params, "parameters": params,
        "expected": expected.ravel().tolist(),
    })


# linear
xs = [rand((4, 6)) for _ in range(3)]
for normalize in (True, False):
    w = [0.5, 0.3, -0.2]
    case(f"linear normalize={normalize}", "linear", xs, [{"weight": v} for v in w], {"normalize": int(normalize)}, linear(xs, w, normalize))

# slerp: a generic pair, an obtuse pair, and a nearly parallel pair (the linear fallback)
v0, v1 = rand((5, 8)), rand((5, 8))
case("slerp t=0.3", "slerp", [v1], [{}], {"t": 0.3}, slerp(0.3, v0, v1), base=v0)
case("slerp t=0.8 obtuse", "slerp", [f32(-v0 + 0.4 * v1)], [{}], {"t": 0.8}, slerp(0.8, v0, f32(-v0 + 0.4 * v1)), base=v0)
near = f32(1.7 * v0 + 0.01 * rand((5, 8)))
cos = np.dot(v0.ravel(), near.ravel()) / np.linalg.norm(v0) / np.linalg.norm(near)
assert cos > 0.9995, cos
case("slerp nearly parallel (linear fallback)", "slerp", [near], [{}], {"t": 0.4}, slerp(0.4, v0, near), base=v0)
vec0, vec1 = rand(16), rand(16)
case("slerp vector t=0.5", "slerp", [vec1], [{}], {"t": 0.5}, slerp(0.5, vec0, vec1), base=vec0, tensor="model.layers.1.input_layernorm.weight")

# task arithmetic
base = rand((6, 5))
ms = [f32(base + rand((6, 5), 0.1)) for _ in range(3)]
taus = [m - base for m in ms]
w = [0.7, 0.5, 0.4]
for normalize in (False, True):
    case(f"task_arithmetic normalize={normalize} lambda=0.8", "task_arithmetic", ms, [{"weight": v} for v in w],
         {"normalize": int(normalize), "lambda": 0.8, "rescale": 0}, combine(base, taus, w, False, normalize, 0.8), base=base)

# TIES where the election matters: element by element, two small deltas of one sign against one large of the other
# (the weighted sum, not the count, decides), with trimming at density 0.6.
n = 40
base = rand((4, 10))
d1 = rand((4, 10), 0.05); d2 = rand((4, 10), 0.05); d3 = rand((4, 10), 0.05)
flip = rng.random((4, 10)) < 0.5
d1 = np.where(flip, np.abs(d1), d1); d2 = np.where(flip, np.abs(d2), d2); d3 = np.where(flip, -3 * np.abs(d3), d3)
ms = [f32(base + d) for d in (d1, d2, d3)]
taus = [m - base for m in ms]
w = [1.0, 0.8, 0.6]
dens = [0.6, 0.7, 0.5]
trimmed = [trim_top(t, d) for t, d in zip(taus, dens)]
count_majority = np.sign(sum(np.sign(t) for t in trimmed))
weighted_majority = np.where(sum(wi * t for wi, t in zip(w, trimmed)) >= 0, 1, -1)
assert np.any((count_majority != 0) & (count_majority != weighted_majority)), "the election must differ from a count somewhere"
for normalize in (True, False):
    case(f"ties density normalize={normalize}", "ties", ms, [{"weight": wi, "density": di} for wi, di in zip(w, dens)],
         {"normalize": int(normalize), "lambda": 1.0, "rescale": 0}, combine(base, trimmed, w, True, normalize, 1.0), base=base)
case("ties lambda=1.5 negative weight", "ties", ms, [{"weight": 1.0, "density": 0.5}, {"weight": -0.5, "density": 0.9}, {"weight": 0.6, "density": 1.0}],
     {"normalize": 1, "lambda": 1.5, "rescale": 0},
     combine(base, [trim_top(taus[0], 0.5), trim_top(taus[1], 0.9), taus[2]], [1.0, -0.5, 0.6], True, True, 1.5), base=base)

# DARE at density 1: nothing dropped, so dare_linear is task arithmetic and dare_ties TIES without trimming
case("dare_linear density 1", "dare_linear", ms, [{"weight": wi, "density": 1.0} for wi in w], {"normalize": 0, "lambda": 1.0, "rescale": 1},
     combine(base, taus, w, False, False, 1.0), base=base)
case("dare_ties density 1", "dare_ties", ms, [{"weight": wi, "density": 1.0} for wi in w], {"normalize": 0, "lambda": 1.0, "rescale": 1},
     combine(base, taus, w, True, False, 1.0), base=base)

# Breadcrumbs
base = rand((5, 12))
ms = [f32(base + rand((5, 12), 0.1)) for _ in range(2)]
taus = [m - base for m in ms]
w = [0.6, 0.9]
for gamma, density in ((0.1, 0.7), (0.05, 0.9), (0.4, 0.8)):
    crumbs = [breadcrumbs(t, density, gamma) for t in taus]
    case(f"breadcrumbs gamma={gamma} density={density}", "breadcrumbs", ms, [{"weight": wi, "density": density, "gamma": gamma} for wi in w],
         {"normalize": 0, "lambda": 1.0, "rescale": 0}, combine(base, crumbs, w, False, False, 1.0), base=base)
crumbs = [breadcrumbs(t, 0.7, 0.1) for t in taus]
case("breadcrumbs_ties", "breadcrumbs_ties", ms, [{"weight": wi, "density": 0.7, "gamma": 0.1} for wi in w],
     {"normalize": 1, "lambda": 1.0, "rescale": 0}, combine(base, crumbs, w, True, True, 1.0), base=base)

# Model Stock: a matrix (per row), a vector (per element), an embedding (whole tensor)
base = rand((4, 9))
ms = [f32(base + rand((4, 9), 0.1) + 0.05 * np.ones((4, 9))) for _ in range(3)]
case("model_stock matrix", "model_stock", ms, [{}, {}, {}], {}, model_stock(base, ms, False), base=base)
basev = rand(12)
msv = [f32(basev + rand(12, 0.1)) for _ in range(2)]
case("model_stock vector", "model_stock", msv, [{}, {}], {}, model_stock(basev, msv, False), base=basev, tensor="model.norm.weight")
basee = rand((7, 4))
mse = [f32(basee + rand((7, 4), 0.1) + 0.03) for _ in range(2)]
case("model_stock embedding", "model_stock", mse, [{}, {}], {}, model_stock(basee, mse, True), base=basee, tensor="model.embed_tokens.weight", embedding=True)

gradients = []
for values, layers in (([0.0, 1.0], 5), ([0.0, 0.5, 0.3, 0.7, 1.0], 30), ([1.0, 0.2, 0.6], 7), ([0.25], 4), ([0.1, 0.9], 1)):
    gradients.append({"values": values, "layers": layers, "expected": [gradient(values, l, layers) for l in range(layers)]})

os.makedirs(sys.argv[1], exist_ok=True)
with open(os.path.join(sys.argv[1], "merge_methods.json"), "w") as f:
    json.dump({"note": "float64 reference from tools/reference/make_merge_fixtures.py", "cases": cases, "gradients": gradients}, f)
print(f"{len(cases)} cases, {len(gradients)} gradients")
