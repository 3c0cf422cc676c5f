"""Reference losses and logit gradients of Hone's unlearning objectives (src/Hone/Training/UnlearningObjective.cs),
in float64 PyTorch autograd. Writes tests/Hone.Tests/Fixtures/unlearning/objectives.json.

Four sequences of T=5 positions over a vocabulary of V=7 (target -1 = not scored, as SFT masking); sequences 0-2 are
the forget set, sequence 3 the retain set. Per case: the objective L and dL/dlogits, where with F/R the forget/retain
target tokens, N the forget sequences and NLL_s a sequence's summed NLL:
  grad-ascent  L = -sum_f NLL_f / F
  grad-diff    L = -sum_f NLL_f / F + w * sum_r NLL_r / R
  npo          L = (2/beta) * mean_f log(1 + exp(beta * (log pi(y_f) - log pi_ref(y_f)))) [+ w * sum_r NLL_r / R]
with log pi = -NLL and log pi_ref the given reference log-likelihoods.
Run: /usr/bin/python3 tools/reference/make_unlearn_fixtures.py
"""
import json
import os
import torch

torch.manual_seed(20261206)
S, T, V = 4, 5, 7
logits0 = (torch.randn(S, T, V, dtype=torch.float64) * 1.5).float().double()  # float32-representable inputs
targets = torch.randint(0, V, (S, T))
targets[0, 0] = -1
targets[1, :2] = -1
targets[2, 4] = -1
targets[3, 0] = -1
forget = [0, 1, 2]
retain = [3]
# The reference model's log-likelihood of each forget sequence: near the current one, on both sides, so that the NPO
# weights sigma(beta * log-ratio) differ from 1/2.
with torch.no_grad():
    lp = torch.log_softmax(logits0, -1)
    mask = targets >= 0
    nll0 = -(lp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
ref_loglik = (-nll0 + torch.tensor([1.5, -2.0, 0.7, 0.0], dtype=torch.float64)).float().double()


def objective(logits, method, beta, retain_weight):
    lp = torch.log_softmax(logits, -1)
    mask = targets >= 0
    nll_tok = -(lp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask)
    nll = nll_tok.sum(-1)
    F = mask[forget].sum()
    R = mask[retain].sum()
    if method == "npo":
        logratio = -nll[forget] - ref_loglik[forget]
        loss = (2.0 / beta) * torch.nn.functional.softplus(beta * logratio).mean()
    else:
        loss = -nll[forget].sum() / F
    if retain_weight > 0:
        loss = loss + retain_weight * nll[retain].sum() / R
    return loss


cases = []
for name, method, beta, w in [("grad-ascent", "grad-ascent", 0.1, 0.0), ("grad-diff", "grad-diff", 0.1, 0.7),
                              ("npo", "npo", 0.1, 0.0), ("npo-beta2-retain", "npo", 2.0, 0.5)]:
    logits = logits0.clone().requires_grad_(True)
    loss = objective(logits, method, beta, w)
    loss.backward()
    cases.append({"name": name, "method": method, "beta": beta, "retain_weight": w, "loss": loss.item(),
                  "dlogits": logits.grad.flatten().tolist()})

out = {
    "sequences": S, "positions": T, "vocab": V, "forget": forget, "retain": retain,
    "logits": logits0.flatten().tolist(), "targets": targets.flatten().tolist(),
    "reference_loglik": ref_loglik.tolist(), "cases": cases,
}
path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "Hone.Tests", "Fixtures", "unlearning", "objectives.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path))
