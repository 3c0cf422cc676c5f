#!/usr/bin/env python3
"""Float64 reference values and gradients of the two router losses of mixture-of-experts training.

- Load-balancing loss as Hugging Face's load_balancing_loss_func computes it (no attention mask): the router logits of
  every layer are concatenated over tokens, p = softmax(logits), the top-k experts of each token give a one-hot mask
  [N, k, E], tokens_per_expert = mean over tokens of the mask [k, E], router_prob = mean over tokens of p [E], and
  loss = E * sum(tokens_per_expert * router_prob). The mask carries no gradient.
- Router z-loss (ST-MoE, Zoph et al. 2022): mean over tokens of logsumexp(logits)^2.

Gradients with respect to the logits come from autograd. Output: router_losses.json.

Run:  /usr/bin/python3 tools/reference/make_router_loss_fixture.py tests/Hone.Tests/Fixtures/experts
Needs: python3-torch (Debian).
"""
import json, os, sys
import torch

torch.set_default_dtype(torch.float64)


def load_balancing_loss(logits, k):  # logits [N, E]
    E = logits.shape[-1]
    p = torch.softmax(logits, -1)
    _, chosen = torch.topk(p, k, -1)
    mask = torch.nn.functional.one_hot(chosen, E).to(torch.float64)      # [N, k, E]
    tokens_per_expert = mask.mean(0)                                     # [k, E]
    router_prob = p.mean(0)                                              # [E]
    return (tokens_per_expert * router_prob.unsqueeze(0)).sum() * E


def z_loss(logits):
    return (torch.logsumexp(logits, -1) ** 2).mean()


def main(out_dir):
    g = torch.Generator().manual_seed(11)
    cases = []
    for layers, tokens, experts, k in [(2, 7, 4, 2), (3, 5, 8, 3), (1, 9, 6, 1)]:
        logits = (torch.randn(layers * tokens, experts, generator=g) * 1.5).requires_grad_(True)
        balance = load_balancing_loss(logits, k)
        (balance_grad,) = torch.autograd.grad(balance, logits)
        z = z_loss(logits)
        (z_grad,) = torch.autograd.grad(z, logits)
        cases.append({
            "rows": layers * tokens, "experts": experts, "k": k,
            "logits": [round(float(v), 12) for v in logits.detach().flatten()],
            "balance_loss": float(balance), "balance_grad": [float(v) for v in balance_grad.flatten()],
            "z_loss": float(z), "z_grad": [float(v) for v in z_grad.flatten()],
        })
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "router_losses.json"), "w") as f:
        json.dump({"note": "float64 PyTorch reference from tools/reference/make_router_loss_fixture.py", "cases": cases}, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/Hone.Tests/Fixtures/experts")
