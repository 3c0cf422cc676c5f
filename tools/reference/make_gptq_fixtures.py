#!/usr/bin/env python3
"""Float64 reference results of GPTQ (Frantar et al. 2022) with Q4_0's quantizer, for Hone's Gptq.

One case per variant: a random W[8, 64] (float32 values) and correlated activations X[256, 64] (X = Z·A with Z
standard normal, so the inputs are strongly correlated), H = 2·XᵀX / N, then GPTQ as the paper's reference code runs it:

- dead inputs (H[i,i] = 0) get H[i,i] = 1 (none occur here); λ = damp·mean(diag H) is added to the diagonal;
- act-order: columns in descending diag H (a stable sort), H permuted alike;
- U = upper Cholesky factor of H⁻¹ (torch.linalg.cholesky → cholesky_inverse → cholesky(upper=True));
- columns in lazy batches of `block`: column i's error e = (w_i − q_i)/U[i,i] updates the batch's later columns at
  once (W[:, k] −= e·U[i,k]) and the columns after the batch when the batch ends (W[:, i2:] −= E·U[i1:i2, i2:]);
- the quantizer is Q4_0's per 32-column group of a row: d = m/−8 with m the signed value of largest magnitude (first
  on ties), code = min(15, max(0, trunc(x/d + 8.5))), dequantized (code − 8)·fp16(d) (the block stores d as fp16).
  Without act-order a group's d is fitted when the walk reaches its first column, to the CURRENT (error-updated) values
  of its 32 columns (the paper's code fits to W, which lacks the batch's in-flight updates; here the group lies in the
  batch and sees them). With act-order the groups are fitted to the unchanged W before the walk ("static groups"),
  since a group's columns are no longer reached together.

The expected output is the dequantized Q[8, 64] in the original column order, and the proxy losses
tr((W−Q)·H·(W−Q)ᵀ) of GPTQ and of plain Q4_0 rounding.

Run:  /usr/bin/python3 tools/reference/make_gptq_fixtures.py tests/Hone.Tests/Fixtures/gptq
"""
import json, os, sys
import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def fit_group(values):
    """Q4_0's block fit of one row's 32 values: (inverse scale as float32 computes it, fp16-rounded d)."""
    v = values.numpy().astype(np.float32)
    a = np.abs(v)
    m = v[int(np.argmax(a))] if a.max() > 0 else np.float32(0)  # argmax returns the first maximum
    d = np.float32(m / np.float32(-8))
    inv = np.float32(1) / d if d != 0 else np.float32(0)
    return float(inv), float(np.float16(d))


def quantize_value(x, inv, d16):
    t = np.float32(np.float32(x) * np.float32(inv)) + np.float32(8.5)
    code = min(15, max(0, int(np.float32(t))))  # int() truncates toward zero, as C's cast
    return (code - 8) * d16


def gptq(W, H, damp, block, act_order, group=32):
    W = W.clone()
    rows, n = W.shape
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    perm = torch.arange(n)
    if act_order:
        perm = torch.tensor(sorted(range(n), key=lambda i: -float(H[i, i])))  # stable descending
    static = None
    if act_order:
        static = [[fit_group(W[r, g * group:(g + 1) * group]) for g in range(n // group)] for r in range(rows)]
    Wp = W[:, perm].clone()
    Hp = H[perm][:, perm].clone()
    lam = damp * torch.mean(torch.diag(Hp))
    Hp += lam * torch.eye(n)
    L = torch.linalg.cholesky(Hp)
    Hinv = torch.cholesky_inverse(L)
    U = torch.linalg.cholesky(Hinv, upper=True)
    Q = torch.zeros_like(W)
    fits = [[None] * (n // group) for _ in range(rows)]
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        Err = torch.zeros(rows, i2 - i1)
        for i in range(i1, i2):
            col = int(perm[i])
            g = col // group
            for r in range(rows):
                if act_order:
                    fits[r][g] = static[r][g]
                elif col % group == 0:
                    fits[r][g] = fit_group(Wp[r, i:i + group])
            q = torch.tensor([quantize_value(float(Wp[r, i]), *fits[r][g]) for r in range(rows)])
            Q[:, col] = q
            err = (Wp[:, i] - q) / U[i, i]
            Wp[:, i + 1:i2] -= err.unsqueeze(1) @ U[i, i + 1:i2].unsqueeze(0)
            Err[:, i - i1] = err
        Wp[:, i2:] -= Err @ U[i1:i2, i2:]
    return Q, float(lam)


def plain(W, group=32):
    rows, n = W.shape
    Q = torch.zeros_like(W)
    for r in range(rows):
        for g in range(n // group):
            inv, d16 = fit_group(W[r, g * group:(g + 1) * group])
            for c in range(g * group, (g + 1) * group):
                Q[r, c] = quantize_value(float(W[r, c]), inv, d16)
    return Q


def loss(W, Q, H):
    E = W - Q
    return float(torch.trace(E @ H @ E.T))


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261206)
    rows, n, tokens = 8, 64, 256
    W = torch.tensor(rng.standard_normal((rows, n)).astype(np.float32).astype(np.float64))
    A = rng.standard_normal((n, n)) * 0.3 + np.eye(n)
    A[:, 5] *= 4  # a few loud inputs, so act-order has something to order
    A[:, 40] *= 3
    X = torch.tensor((rng.standard_normal((tokens, n)) @ A).astype(np.float32).astype(np.float64))
    H = 2 * X.T @ X / tokens
    cases = []
    for name, block, act in [("sequential", 128, False), ("batches of 16", 16, False), ("act-order", 128, True)]:
        Q, lam = gptq(W, H, 0.01, block, act)
        cases.append({"name": name, "damp": 0.01, "block": block, "act_order": act, "lambda": lam,
                      "expected": Q.flatten().tolist(), "loss": loss(W, Q, H), "plain_loss": loss(W, plain(W), H)})
    data = {"rows": rows, "cols": n, "tokens": tokens,
            "weights": W.flatten().tolist(), "activations": X.flatten().tolist(), "cases": cases}
    with open(os.path.join(out, "gptq_q4_0.json"), "w") as f:
        json.dump(data, f)
    for c in cases:
        print(f"{c['name']}: loss {c['loss']:.6g}, plain {c['plain_loss']:.6g}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/Hone.Tests/Fixtures/gptq")
