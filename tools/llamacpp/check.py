#!/usr/bin/env python3
"""Driver for check.sh (see there). Runs llama.cpp inside the chroot and hone here on the same files; prints one line
per comparison and exits non-zero when any differs beyond its tolerance."""
import argparse, json, math, os, shutil, statistics, subprocess, sys

p = argparse.ArgumentParser()
p.add_argument("--root", required=True); p.add_argument("--work", required=True); p.add_argument("--shared", required=True)
p.add_argument("--hone", required=True); p.add_argument("--tools", required=True)
p.add_argument("--bench", nargs="?", const=3, type=int, default=0, help="also run speed, this many interleaved rounds")
p.add_argument("--only", choices=["moe"], help="run one part: moe = the mixtures of experts only")
a = p.parse_args()
work, failures = a.work, []

def llama(tool, *args):
    """Runs a llama.cpp tool in the chroot; paths under work are seen there as /work."""
    args = [x.replace(work, "/work") if isinstance(x, str) else str(x) for x in args]
    r = subprocess.run(["chroot", a.root, tool, *args], capture_output=True, text=True)
    if r.returncode != 0: raise SystemExit(f"{tool} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r

def hone(*args):
    r = subprocess.run(["dotnet", a.hone, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0: raise SystemExit(f"hone {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout

def check(ok, line):
    print(("ok    " if ok else "FAIL  ") + line, flush=True)
    if not ok: failures.append(line)

text = os.path.join(work, "text.txt")
with open(os.path.join(a.shared, "datasets/tinyshakespeare/input.txt"), "rb") as f: data = f.read(20000)
open(text, "wb").write(data[:data.rindex(b"\n") + 1])

def perplexity_pair(model, tolerance, label):
    # --precision fast: llama.cpp's numerics (bf16 weights meet bf16-rounded activations, quantized weights Q8 ones).
    h = json.loads(hone("perplexity", model, "-f", text, "-c", 128, "--protocol", "llama.cpp", "--precision", "fast", "--threads", 2, "--json"))
    r = llama("llama-perplexity", "-m", model, "-f", text, "-c", 128, "-t", 2)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "Final estimate: PPL" in l]
    if not lines: raise SystemExit(f"llama-perplexity printed no final estimate for {model}:\n{(r.stdout + r.stderr)[-3000:]}")
    line = lines[0]
    lp = float(line.split("PPL =")[1].split()[0])
    rel = abs(math.log(h["ppl"]) - math.log(lp)) / abs(math.log(lp))
    check(rel <= tolerance, f"{label}: perplexity hone {h['ppl']:.6g} llama.cpp {lp:.6g} (log relative diff {rel:.1e}, tolerance {tolerance:.0e})")

# 1. Real weights: stories260K GGUF rewritten by hone in every type; greedy text and perplexity.
stories = os.path.join(a.shared, "models/stories260K/tinyllamas-stories-260k-f32.gguf")
for t in ([] if a.only else ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"]):
    out = os.path.join(work, f"stories-{t}.gguf")
    hone("convert", stories, "--out", out, "--type", t)
    ht = json.loads(hone("generate", out, "-p", "Once", "-n", 100, "--temp", 0, "--threads", 2, "--json"))["text"]
    lt = llama("llama-completion", "-m", out, "-p", "Once", "-n", 100, "--temp", 0, "-no-cnv", "--no-display-prompt", "-t", 2).stdout
    # llama.cpp prints the first generated piece with its SentencePiece space; hone's text has it too unless it was
    # trimmed as the start of the continuation, and llama-completion ends with newlines: compare stripped.
    same = ht.strip() == lt.strip()
    check(same, f"stories260K {t}: greedy 100 tokens from 'Once' " + ("identical" if same else f"differ:\n  hone:  {ht!r}\n  llama: {lt!r}"))
    perplexity_pair(out, 1e-4 if t in ("f32", "f16", "bf16") else 1e-3, f"stories260K {t}")

# 2. Hugging Face directories written at random, converted to GGUF by hone (q/k permutation, tokenizer metadata).
tokenizers = os.path.join(a.shared, "tokenizers")
vocab_tests = os.path.join(tokenizers, "llama.cpp-vocab")
cases = [("llama", "llama2-hf", "ggml-vocab-llama-spm.gguf.inp"), ("llama", "gpt2-hf", "ggml-vocab-gpt-2.gguf.inp"),
         ("qwen2", "gpt2-hf", "ggml-vocab-gpt-2.gguf.inp")]
for arch, tok, inputs in ([] if a.only else cases):
    d = os.path.join(work, f"{arch}-{tok}")
    subprocess.run([sys.executable, os.path.join(a.tools, "make_random_model.py"), d, "--arch", arch, "--tokenizer", os.path.join(tokenizers, tok)], check=True, capture_output=True)
    for t in ["f32", "q8_0", "q4_0"]:
        out = d + f"-{t}.gguf"
        hone("convert", d, "--out", out, "--type", t)
        perplexity_pair(out, 1e-4 if t == "f32" else 1e-3, f"{arch} + {tok} {t} (from HF)")
    strings = [s for s in open(os.path.join(vocab_tests, inputs), encoding="utf-8").read().split("\n__ggml_vocab_test__\n") if s]
    same, gguf = 0, d + "-f32.gguf"
    for i, s in enumerate(strings):
        f = os.path.join(work, "tokens.txt"); open(f, "w", encoding="utf-8").write(s)
        lt = json.loads(llama("llama-tokenize", "-m", gguf, "-f", f, "--ids", "--log-disable").stdout.strip().splitlines()[-1])
        hg = json.loads(hone("tokenize", gguf, "-f", f, "--json"))["ids"]
        hd = json.loads(hone("tokenize", d, "-f", f, "--json"))["ids"]
        if lt == hg == hd: same += 1
        else: print(f"      differ on {s[:40]!r}: llama.cpp {lt[:10]} hone gguf {hg[:10]} hone dir {hd[:10]}")
    check(same == len(strings), f"{arch} + {tok}: token ids equal on {same}/{len(strings)} of llama.cpp's vocab test strings (llama-tokenize vs hone on the GGUF and on tokenizer.json)")

# 2b. Mixtures of experts (Mixtral as llama with expert_count; qwen2moe with its shared expert) written at random,
# converted by hone with the experts stacked as llama.cpp reads them.
for arch in ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]:
    d = os.path.join(work, f"{arch}-gpt2-hf")
    subprocess.run([sys.executable, os.path.join(a.tools, "make_random_model.py"), d, "--arch", arch, "--tokenizer", os.path.join(tokenizers, "gpt2-hf")], check=True, capture_output=True)
    for t in ["f32", "q8_0"]:
        out = d + f"-{t}.gguf"
        hone("convert", d, "--out", out, "--type", t)
        perplexity_pair(out, 1e-4 if t == "f32" else 1e-3, f"{arch} + gpt2-hf {t} (from HF)")

# 2c. A mixture built by `hone moe build` (mergekit-moe config, hidden routers) from two random llama models of one shape.
base = os.path.join(work, "moe-base"); other = os.path.join(work, "moe-other")
for d, seed in [(base, 1), (other, 2)]:
    subprocess.run([sys.executable, os.path.join(a.tools, "make_random_model.py"), d, "--arch", "llama", "--seed", str(seed),
                    "--tokenizer", os.path.join(tokenizers, "gpt2-hf")], check=True, capture_output=True)
config = os.path.join(work, "moe.yaml")
open(config, "w").write(f"""base_model: {base}
gate_mode: hidden
experts_per_token: 2
experts:
  - source_model: {base}
    positive_prompts: ["To be, or not to be"]
  - source_model: {other}
    positive_prompts: ["Now is the winter of our discontent"]
  - source_model: {other}
    positive_prompts: ["Friends, Romans, countrymen"]
    residual_scale: 0.5
  - source_model: {base}
    positive_prompts: ["All the world's a stage"]
    noise_scale: 0.01
""")
for t in ["f32", "q8_0"]:
    out = os.path.join(work, f"moe-built-{t}.gguf")
    hone("moe", "build", config, "--out", out, "--type", t)
    perplexity_pair(out, 1e-4 if t == "f32" else 1e-3, f"hone moe build (4 experts of 2 llama models, hidden routers) {t}")

# 3. Speed side by side (optional).
if a.bench:
    d = os.path.join(work, "smollm2")
    subprocess.run([sys.executable, os.path.join(a.tools, "make_random_model.py"), d, "--shape", "smollm2-135m"], check=True, capture_output=True)
    info = llama("llama-completion", "--version").stderr.strip().splitlines()[0]
    results = {}
    types = ["f32", "bf16", "q8_0", "q4_0"]
    for t in types: hone("convert", d, "--out", d + f"-{t}.gguf", "--type", t)
    shutil.rmtree(d)
    for r in range(a.bench):
        for t in types:
            m = d + f"-{t}.gguf"
            out = json.loads(llama("llama-bench", "-m", m, "-t", 2, "-p", 512, "-n", 128, "-r", 3, "-o", "json").stdout)
            for row in out:
                key = "pp" if row["n_prompt"] > 0 else "tg"
                results.setdefault((t, "llama.cpp", key), []).append(row["avg_ts"])
            h = json.loads(hone("bench", "--model", m, "--threads", 2, "-p", 512, "-n", 128, "-r", 3, "--json"))
            results.setdefault((t, "hone", "pp"), []).append(h["prompt_tokens_per_s"])
            results.setdefault((t, "hone", "tg"), []).append(h["gen_tokens_per_s"])
            print(f"      round {r + 1} {t}: llama.cpp {results[(t, 'llama.cpp', 'pp')][-1]:.0f}/{results[(t, 'llama.cpp', 'tg')][-1]:.0f}  hone {results[(t, 'hone', 'pp')][-1]:.0f}/{results[(t, 'hone', 'tg')][-1]:.0f}", flush=True)
    print(f"\nSpeed, SmolLM2-135M shape, 2 threads, pp512 / tg128 tokens/s, median of {a.bench} interleaved rounds ({info}):")
    print("| type | llama.cpp pp512 | hone pp512 | ratio | llama.cpp tg128 | hone tg128 | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t in types:
        m = {(w, k): statistics.median(results[(t, w, k)]) for w in ("llama.cpp", "hone") for k in ("pp", "tg")}
        print(f"| {t.upper()} | {m[('llama.cpp', 'pp')]:.0f} | {m[('hone', 'pp')]:.0f} | {m[('hone', 'pp')] / m[('llama.cpp', 'pp')]:.2f} | {m[('llama.cpp', 'tg')]:.0f} | {m[('hone', 'tg')]:.0f} | {m[('hone', 'tg')] / m[('llama.cpp', 'tg')]:.2f} |")

print(f"\n{len(failures)} failed" if failures else "\nall checks passed")
sys.exit(1 if failures else 0)
