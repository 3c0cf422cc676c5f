#!/usr/bin/env python3
"""PyTorch peer for `hone bench --train`: the same random SmolLM2-135M-shaped Llama (hidden 576, 30 layers, 9 heads,
3 KV heads, FFN 1536, vocab 49152, tied embeddings), batch 4 x 256 tokens, fp32, AdamW, gradient clipping at 1.0,
timed the same way (best of N optimizer steps after one warm-up). Run it side by side with hone, interleaved:

  /usr/bin/python3 tools/peers/pytorch_train.py --method lora|full [--threads 2] [--steps 3] [--json]

Written for Debian's python3-torch 1.13 (`apt-get install python3-torch libopenblas0-pthread`; run it with
/usr/bin/python3). Debian builds torch against the generic BLAS interface; with the reference BLAS it runs at a
fraction of this speed, so install OpenBLAS (pthread flavour). The settings below were the fastest of those tried on
the Zen 5 machine (LoRA tokens/s): OpenBLAS with --threads threads and torch's own intra-op pool at 1 (both at 2
oversubscribe the cores: 123 vs 194), OPENBLAS_CORETYPE=SkylakeX (its Zen detection predates Zen 5), and glibc malloc
keeping freed memory instead of returning every large tensor to the kernel (71 -> 93 before the thread change). The
script sets them itself and re-executes. The OpenMP OpenBLAS was slower (102-170).

Model and step: fused cross-entropy over all rows at once, AdamW with foreach (multi-tensor) updates, LoRA as PEFT
computes it (frozen base, x·Aᵀ·Bᵀ·alpha/r added), rank 16, alpha 32, on q,k,v,o,gate,up,down; eager attention with a
causal mask (1.13 has no fused attention). Prints tokens/s and the peak RSS (ru_maxrss) of this process.
"""
import argparse, json, math, os, resource, sys, time

if "HONE_PEER_ENV" not in os.environ:
    threads = next((sys.argv[i + 1] for i, x in enumerate(sys.argv[:-1]) if x == "--threads"), "2")
    env = dict(os.environ, HONE_PEER_ENV="1", OPENBLAS_NUM_THREADS=threads, OPENBLAS_CORETYPE="SkylakeX",
               OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="17179869184", MALLOC_TRIM_THRESHOLD_="17179869184",
               MALLOC_TOP_PAD_="1073741824")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--method", choices=["lora", "full"], default="lora")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--rank", type=int, default=16)
p.add_argument("--json", action="store_true")
a = p.parse_args()
torch.set_num_threads(1)  # BLAS holds the --threads threads (see above)
torch.manual_seed(1)
V, D, F_, L, H, KV, theta, eps = 49152, 576, 1536, 30, 9, 3, 100000.0, 1e-5
Dh = D // H

class Linear(nn.Module):
    def __init__(self, n_in, n_out, lora):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.02, requires_grad=not lora)
        self.lora = lora
        if lora:
            self.a = nn.Parameter(torch.empty(a.rank, n_in)); nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
            self.b = nn.Parameter(torch.zeros(n_out, a.rank))
            self.scale = 2.0  # alpha 32 / r 16
    def forward(self, x):
        y = F.linear(x, self.weight)
        return y + F.linear(F.linear(x, self.a), self.b) * self.scale if self.lora else y

class RmsNorm(nn.Module):
    def __init__(self, trainable):
        super().__init__(); self.weight = nn.Parameter(torch.ones(D), requires_grad=trainable)
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

def rope_tables(T):
    inv = 1.0 / theta ** (torch.arange(0, Dh, 2).float() / Dh)
    f = torch.outer(torch.arange(T).float(), inv)
    e = torch.cat([f, f], -1)
    return e.cos(), e.sin()

def rotate(x, cos, sin):
    x1, x2 = x[..., :Dh // 2], x[..., Dh // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin

class Block(nn.Module):
    def __init__(self, lora):
        super().__init__()
        full = not lora
        self.n1, self.n2 = RmsNorm(full), RmsNorm(full)
        self.q, self.k, self.v, self.o = Linear(D, H * Dh, lora), Linear(D, KV * Dh, lora), Linear(D, KV * Dh, lora), Linear(H * Dh, D, lora)
        self.gate, self.up, self.down = Linear(D, F_, lora), Linear(D, F_, lora), Linear(F_, D, lora)
    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.n1(x)
        q = rotate(self.q(h).view(B, T, H, Dh).transpose(1, 2), cos, sin)
        k = rotate(self.k(h).view(B, T, KV, Dh).transpose(1, 2), cos, sin)
        v = self.v(h).view(B, T, KV, Dh).transpose(1, 2)
        k = k.repeat_interleave(H // KV, dim=1); v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(Dh) + mask
        att = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(att)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))

class Model(nn.Module):
    def __init__(self, lora):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(V, D) * 0.02, requires_grad=not lora)
        self.blocks = nn.ModuleList(Block(lora) for _ in range(L))
        self.norm = RmsNorm(not lora)
    def forward(self, tokens, targets):
        T = tokens.shape[1]
        cos, sin = rope_tables(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = F.embedding(tokens, self.embed)
        for b in self.blocks: x = b(x, cos, sin, mask)
        logits = F.linear(self.norm(x), self.embed)  # tied head
        return F.cross_entropy(logits.view(-1, V), targets.view(-1))

model = Model(a.method == "lora")
params = [q for q in model.parameters() if q.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, foreach=True)
tokens = torch.randint(0, V, (a.batch, a.seq))
targets = torch.roll(tokens, -1, 1)
best = float("inf")
for step in range(a.steps + 1):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = model(tokens, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    dt = time.perf_counter() - t0
    if step > 0: best = min(best, dt)
n = a.batch * a.seq
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
result = {"framework": f"pytorch {torch.__version__}", "method": a.method, "threads": a.threads, "tokens_per_s": n / best,
          "peak_rss_bytes": rss, "trainable_parameters": sum(q.numel() for q in params)}
print(json.dumps(result) if a.json else f"pytorch {torch.__version__} {a.method}: {n / best:.1f} tokens/s, peak RSS {rss / 2**30:.2f} GiB")
