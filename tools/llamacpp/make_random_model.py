#!/usr/bin/env python3
"""Write a random-weight Hugging Face model directory (config.json + model.safetensors, F32) for the llama.cpp
compatibility check. Standard library only.

  make_random_model.py OUT --shape tiny --arch llama|qwen2 --tokenizer DIR   tiny model; vocab from DIR/tokenizer.json
  make_random_model.py OUT --shape smollm2-135m                               SmolLM2-135M shape, no tokenizer (speed only)

Weights are Gaussian (tiny: std 0.5, so logits are large and any layout error shows; smollm2: std 0.02 drawn once
into a 2^20 pool and tiled, which is enough for speed runs). Norm weights are 1 + noise (tiny) or 1 (smollm2).
"""
import argparse, array, json, os, random, shutil, struct

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--shape", choices=["tiny", "smollm2-135m"], default="tiny")
p.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
p.add_argument("--tokenizer", help="directory holding tokenizer.json (copied next to the model)")
a = p.parse_args()

if a.shape == "tiny":
    if not a.tokenizer: p.error("--shape tiny needs --tokenizer")
    tok = json.load(open(os.path.join(a.tokenizer, "tokenizer.json"), encoding="utf-8"))
    V = max(tok["model"]["vocab"].values()) + 1
    for t in tok.get("added_tokens", []): V = max(V, t["id"] + 1)
    D, F, L, H, KV, theta, tied = 64, 160, 2, 4, 2, 10000.0, a.arch == "qwen2"
else:
    V, D, F, L, H, KV, theta, tied = 49152, 576, 1536, 30, 9, 3, 100000.0, True
Dh = D // H

shapes = {"model.embed_tokens.weight": (V, D)}
for l in range(L):
    q = f"model.layers.{l}."
    shapes[q + "input_layernorm.weight"] = (D,)
    shapes[q + "self_attn.q_proj.weight"] = (H * Dh, D)
    shapes[q + "self_attn.k_proj.weight"] = (KV * Dh, D)
    shapes[q + "self_attn.v_proj.weight"] = (KV * Dh, D)
    if a.arch == "qwen2":
        shapes[q + "self_attn.q_proj.bias"] = (H * Dh,)
        shapes[q + "self_attn.k_proj.bias"] = (KV * Dh,)
        shapes[q + "self_attn.v_proj.bias"] = (KV * Dh,)
    shapes[q + "self_attn.o_proj.weight"] = (D, H * Dh)
    shapes[q + "post_attention_layernorm.weight"] = (D,)
    shapes[q + "mlp.gate_proj.weight"] = (F, D)
    shapes[q + "mlp.up_proj.weight"] = (F, D)
    shapes[q + "mlp.down_proj.weight"] = (D, F)
shapes["model.norm.weight"] = (D,)
if not tied: shapes["lm_head.weight"] = (V, D)

rng = random.Random(1)
std = 0.5 if a.shape == "tiny" else 0.02
pool = array.array("f", [rng.gauss(0, std) for _ in range(1 << 20)])
def count(s): return s[0] * (s[1] if len(s) > 1 else 1)

os.makedirs(a.out, exist_ok=True)
header, offset = {}, 0
for name, s in shapes.items():
    header[name] = {"dtype": "F32", "shape": list(s), "data_offsets": [offset, offset + 4 * count(s)]}
    offset += 4 * count(s)
hb = json.dumps(header).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hb)))
    f.write(hb)
    for i, (name, s) in enumerate(shapes.items()):
        n = count(s)
        if name.endswith("norm.weight"):
            f.write(array.array("f", [1.0 + (0.2 * pool[(i * 31 + j) % len(pool)] if a.shape == "tiny" else 0.0) for j in range(n)]).tobytes())
            continue
        start = (i * 7919) % (len(pool) // 2)
        while n > 0:
            m = min(n, len(pool) - start)
            f.write(pool[start:start + m].tobytes())
            n -= m
            start = 0

config = {"architectures": ["LlamaForCausalLM" if a.arch == "llama" else "Qwen2ForCausalLM"], "model_type": a.arch,
          "hidden_size": D, "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
          "num_key_value_heads": KV, "vocab_size": V, "rms_norm_eps": 1e-5, "rope_theta": theta,
          "max_position_embeddings": 2048, "tie_word_embeddings": tied, "hidden_act": "silu", "torch_dtype": "float32"}
json.dump(config, open(os.path.join(a.out, "config.json"), "w"), indent=1)
if a.tokenizer:
    for f in os.listdir(a.tokenizer):
        if f.startswith("tokenizer") or f in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            shutil.copy(os.path.join(a.tokenizer, f), a.out)
print(f"{a.out}: {a.arch} {a.shape}, vocab {V}")
