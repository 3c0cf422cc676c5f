#!/usr/bin/env python3
"""Float64 reference values and gradients of Hone's knowledge-distillation loss (hone train --stage distill).

For student logits z [N, V], teacher logits zt [N, Vt], targets y [N] (-1 = ignored position), the first S = shared
ids (S <= min(V, Vt)), weight a (kd_ratio), temperature T and scale s (1 / targets of the step):

    p_s = softmax(z[:, :S] / T),  p_t = softmax(zt[:, :S] / T)        (each renormalized over the shared ids)
    forward   = KL(p_t || p_s) = sum p_t (log p_t - log p_s)
    reverse   = KL(p_s || p_t) = sum p_s (log p_s - log p_t)
    symmetric = (forward + reverse) / 2
    loss      = s * sum over rows with y >= 0 of [(1 - a) * CE(z, y) + a * T^2 * divergence]

CE is the cross-entropy over all V student logits. dlogits = d loss / d z comes from autograd (rows with y < 0 get
zero). The fixture also records the unscaled sums of CE and T^2 * divergence. Output: kd.json.

Run:  /usr/bin/python3 tools/reference/make_distill_fixtures.py tests/Hone.Tests/Fixtures/distill
Needs: python3-torch (Debian).
"""
import json, os, sys
import torch

torch.set_default_dtype(torch.float64)


def kd_loss(z, zt, y, shared, a, T, kind, s):
    mask = y >= 0
    ce = torch.nn.functional.cross_entropy(z[mask], y[mask], reduction="sum")
    log_ps = torch.log_softmax(z[mask, :shared] / T, -1)
    log_pt = torch.log_softmax(zt[mask, :shared] / T, -1)
    fwd = (log_pt.exp() * (log_pt - log_ps)).sum()
    rev = (log_ps.exp() * (log_ps - log_pt)).sum()
    div = {"forward": fwd, "reverse": rev, "symmetric": 0.5 * (fwd + rev)}[kind]
    kd = T * T * div
    return s * ((1 - a) * ce + a * kd), ce, kd


def case(gen, name, rows, v, vt, shared, a, T, kind, masked, s):
    # Logits of a few units' spread so the tempered distributions are neither flat nor one-hot.
    z = (torch.randn(rows, v, generator=gen) * 2.0)
    zt = (torch.randn(rows, vt, generator=gen) * 2.5)
    y = torch.randint(0, v, (rows,), generator=gen)
    for i in masked:
        y[i] = -1
    z = z.float().double().requires_grad_(True)  # values exactly representable in float32
    zt = zt.float().double()
    loss, ce, kd = kd_loss(z, zt, y, shared, a, T, kind, s)
    loss.backward()
    return {
        "name": name, "rows": rows, "vocab": v, "teacher_vocab": vt, "shared": shared, "ratio": a, "temperature": T,
        "divergence": kind, "scale": s,
        "logits": z.detach().flatten().tolist(), "teacher": zt.flatten().tolist(), "targets": y.tolist(),
        "loss": loss.item(), "cross_entropy_sum": ce.item(), "divergence_sum": kd.item(),
        "dlogits": z.grad.flatten().tolist(),
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/Hone.Tests/Fixtures/distill"
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(20261206)
    cases = []
    for kind in ["forward", "reverse", "symmetric"]:
        # T = 1, distillation only; T = 2 mixed with CE and masked rows; T = 0.7 with a wide vocabulary (SIMD-sized rows)
        cases.append(case(gen, f"{kind}-t1-kd-only", 4, 11, 11, 11, 1.0, 1.0, kind, [], 1.0))
        cases.append(case(gen, f"{kind}-t2-mixed-masked", 6, 37, 37, 37, 0.5, 2.0, kind, [1, 4], 0.25))
        cases.append(case(gen, f"{kind}-t0.7-mixed", 3, 70, 70, 70, 0.3, 0.7, kind, [2], 0.1))
        # vocabularies of different size: teacher wider, then student wider; distilled over the shared ids
        cases.append(case(gen, f"{kind}-t3-teacher-wider", 5, 19, 23, 19, 0.8, 3.0, kind, [0], 0.5))
        cases.append(case(gen, f"{kind}-t2-student-wider", 5, 23, 19, 19, 0.6, 2.0, kind, [3], 0.5))
    # a = 0 must be plain cross-entropy
    cases.append(case(gen, "forward-ratio0-is-cross-entropy", 4, 13, 13, 13, 0.0, 2.0, "forward", [1], 1.0))
    with open(os.path.join(out, "kd.json"), "w") as f:
        json.dump({"generator": "tools/reference/make_distill_fixtures.py", "cases": cases}, f, indent=None)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}/kd.json")


if __name__ == "__main__":
    main()
