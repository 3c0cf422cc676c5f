#!/usr/bin/env python3
"""Float64 reference values and gradients of Hone's distillation loss against a cached top-K teacher
(hone distill cache, then hone train --stage distill --teacher-cache).

The cache holds, per target position, the teacher's K most likely ids over its first S ids and their float32
log-probabilities at temperature T, plus the float32 log of the rest mass (every other id). For student logits z [N, V]
(S <= V), targets y [N] (-1 = ignored), weight a, temperature T and scale s, the loss is taken over K + 1 buckets:

    u = z[:, :S] / T;   log p = log_softmax(u)
    log q_j = log p[id_j]                          (the K ids)
    log q_R = logsumexp(u[other ids]) - logsumexp(u)  (the student's rest mass; absent when K = S)
    log P   = the stored log-probs and log rest, renormalized: log P_b - logsumexp over the K + 1 buckets
    forward = KL(P || q) = sum_b P_b (log P_b - log q_b)
    reverse = KL(q || P) = sum_b q_b (log q_b - log P_b)
    symmetric = (forward + reverse) / 2
    loss    = s * sum over rows with y >= 0 of [(1 - a) * CE(z, y) + a * T^2 * divergence]

dlogits = d loss / d z from autograd. With K = S the buckets are the vocabulary and the loss is the full distillation
loss of make_distill_fixtures.py (each case records that loss as "full_loss" for the K = S cases). The teacher's ids
and log-probs come from teacher logits zt the same way Hone's cache pass computes them (ties: the lower id first).
Output: kd_buckets.json.

Run:  /usr/bin/python3 tools/reference/make_distill_cache_fixtures.py tests/Hone.Tests/Fixtures/distill
Needs: python3-torch (Debian).
"""
import json, os, sys
import torch

torch.set_default_dtype(torch.float64)


def teacher_cache(zt, k, T):
    """Per row: the top-K ids of zt (descending, ties by id), their log-probs at T and the log rest mass, as float32."""
    rows, S = zt.shape
    u = zt / T
    lse = torch.logsumexp(u, -1)
    ids, logp, rest = [], [], []
    for r in range(rows):
        order = sorted(range(S), key=lambda i: (-zt[r, i].item(), i))[:k]
        others = [i for i in range(S) if i not in set(order)]
        ids.append(order)
        logp.append([float((u[r, i] - lse[r]).float()) for i in order])
        rest.append(float((torch.logsumexp(u[r, others], -1) - lse[r]).float()) if others else float("-inf"))
    return ids, logp, rest


def bucket_loss(z, y, shared, ids, logp, rest, a, T, kind, s):
    mask = y >= 0
    ce = torch.nn.functional.cross_entropy(z[mask], y[mask], reduction="sum")
    kd = torch.zeros(())
    for r in range(z.shape[0]):
        if y[r] < 0:
            continue
        u = z[r, :shared] / T
        lse = torch.logsumexp(u, -1)
        log_q = [u[i] - lse for i in ids[r]]
        others = [i for i in range(shared) if i not in set(ids[r])]
        stored = list(logp[r]) + ([rest[r]] if others else [])
        if others:
            log_q.append(torch.logsumexp(u[others], -1) - lse)
        log_q = torch.stack(log_q)
        stored = torch.tensor(stored)
        log_p = stored - torch.logsumexp(stored, -1)
        fwd = (log_p.exp() * (log_p - log_q)).sum()
        rev = (log_q.exp() * (log_q - log_p)).sum()
        kd = kd + {"forward": fwd, "reverse": rev, "symmetric": 0.5 * (fwd + rev)}[kind]
    kd = T * T * kd
    return s * ((1 - a) * ce + a * kd), ce, kd


def full_loss(z, zt, y, shared, a, T, kind, s):
    """make_distill_fixtures.py's loss with the whole teacher row (for K = S)."""
    mask = y >= 0
    ce = torch.nn.functional.cross_entropy(z[mask], y[mask], reduction="sum")
    log_ps = torch.log_softmax(z[mask, :shared] / T, -1)
    log_pt = torch.log_softmax(zt[mask, :shared] / T, -1)
    fwd = (log_pt.exp() * (log_pt - log_ps)).sum()
    rev = (log_ps.exp() * (log_ps - log_pt)).sum()
    div = {"forward": fwd, "reverse": rev, "symmetric": 0.5 * (fwd + rev)}[kind]
    return s * ((1 - a) * ce + a * T * T * div)


def case(gen, name, rows, v, shared, k, a, T, kind, masked, s):
    z = (torch.randn(rows, v, generator=gen) * 2.0).float().double()
    zt = (torch.randn(rows, shared, generator=gen) * 2.5).float().double()
    y = torch.randint(0, v, (rows,), generator=gen)
    for i in masked:
        y[i] = -1
    ids, logp, rest = teacher_cache(zt, k, T)
    z.requires_grad_(True)
    loss, ce, kd = bucket_loss(z, y, shared, ids, logp, rest, a, T, kind, s)
    loss.backward()
    out = {
        "name": name, "rows": rows, "vocab": v, "shared": shared, "top_k": k, "ratio": a, "temperature": T,
        "divergence": kind, "scale": s,
        "logits": z.detach().flatten().tolist(), "teacher_logits": zt.flatten().tolist(), "targets": y.tolist(),
        "ids": [i for row in ids for i in row], "log_probs": [p for row in logp for p in row],
        "log_rest": [r if r != float("-inf") else None for r in rest],
        "loss": loss.item(), "cross_entropy_sum": ce.item(), "divergence_sum": kd.item(),
        "dlogits": z.grad.flatten().tolist(),
    }
    if k == shared:
        full = full_loss(z.detach(), zt, y, shared, a, T, kind, s).item()
        assert abs(full - loss.item()) <= 1e-6 * max(1, abs(full)), (name, full, loss.item())
        out["full_loss"] = full
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/Hone.Tests/Fixtures/distill"
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(20261206)
    cases = []
    for kind in ["forward", "reverse", "symmetric"]:
        # K small (a large rest), K = 1, K = the vocabulary (no rest: the full loss), the student wider than the cache
        cases.append(case(gen, f"{kind}-k4-t1-kd-only", 4, 13, 13, 4, 1.0, 1.0, kind, [], 1.0))
        cases.append(case(gen, f"{kind}-k1-t2-mixed-masked", 5, 11, 11, 1, 0.5, 2.0, kind, [1, 3], 0.25))
        cases.append(case(gen, f"{kind}-k8-t0.7-mixed", 3, 70, 70, 8, 0.3, 0.7, kind, [2], 0.1))
        cases.append(case(gen, f"{kind}-kfull-t2-mixed", 4, 17, 17, 17, 0.6, 2.0, kind, [0], 0.5))
        cases.append(case(gen, f"{kind}-k5-t3-student-wider", 4, 23, 19, 5, 0.8, 3.0, kind, [3], 0.5))
        cases.append(case(gen, f"{kind}-kfull-t1-student-wider", 3, 23, 19, 19, 1.0, 1.0, kind, [], 1.0))
    with open(os.path.join(out, "kd_buckets.json"), "w") as f:
        json.dump({"generator": "tools/reference/make_distill_cache_fixtures.py", "cases": cases}, f, indent=None)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}/kd_buckets.json")


if __name__ == "__main__":
    main()
