#!/usr/bin/env python3
"""Damaged copies of real files (../shared/data) fed to the built hone CLI, with a random seed: GGUF header bytes and
truncations, safetensors headers, config.json, tokenizer.json, adapter configs and tensors, JSONL and CSV training
data, chat templates, numeric options. Flags a run whose exit code is not 0/1, whose message says "unexpected" or holds
a stack trace, that hangs, or that exits 0 on input that is surely broken; every run is listed with its last line.

    python3 tools/damaged/sweep.py src/Hone.Cli/bin/Release/net10.0/hone.dll /tmp/sweep 1

N_GGUF, N_CUT, N_ST, N_CFG, N_TOK, N_AD, N_ADST, N_DATA, N_TPL set how many cases of each kind (0 skips a kind).
A syntax error of a damaged template may legitimately say "unexpected char": read the flagged lines."""
import json, os, random, shutil, struct, subprocess, sys, gzip, time
HONE = sys.argv[1]; WORK = sys.argv[2]; SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 1
SH = os.environ.get('HONE_SHARED_DATA') or os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'data')
rng = random.Random(SEED)
os.makedirs(WORK, exist_ok=True)
results = []
def run(kind, args, case, stdin=None, timeout=120, expect_error=None):
    t0 = time.time()
    try:
        p = subprocess.run(['dotnet', HONE] + args, input=stdin, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, 'DOTNET_GCHeapHardLimit': '0x180000000'})
        rc, err, out = p.returncode, p.stderr, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, err, out = 'TIMEOUT', (e.stderr or b'').decode(errors='replace') if isinstance(e.stderr, bytes) else (e.stderr or ''), ''
    dt = time.time() - t0
    bad = []
    if rc == 'TIMEOUT': bad.append('hang')
    elif rc not in (0, 1): bad.append(f'rc={rc}')
    low = err.lower()
    if 'unexpected' in low or 'please report' in low: bad.append('unexpected')
    if '\n   at ' in err or 'Unhandled exception' in err: bad.append('stack')
    if rc == 1 and len([l for l in err.strip().splitlines() if l.strip() and not l.startswith('   ')]) > 3: bad.append('multiline')
    if expect_error and rc == 0: bad.append('accepted')
    first = (err.strip().splitlines() or [''])[-1][:300]
    results.append(dict(kind=kind, case=case, rc=rc, secs=round(dt, 1), bad=bad, msg=first))
    print(f"{'BAD ' + ','.join(bad) if bad else 'ok  '} {kind:12} rc={rc} {dt:5.1f}s {case[:70]} :: {first[:160]}", flush=True)

def mutate_bytes(data, lo, hi, n=1):
    b = bytearray(data)
    for _ in range(n):
        off = rng.randrange(lo, hi)
        width = rng.choice([1, 2, 4, 8])
        val = rng.choice([b'\xff' * width, b'\x00' * width, b'\x7f' + b'\xff' * (width - 1), bytes(rng.randrange(256) for _ in range(width)), b'\x80' * width])
        b[off:off + width] = val[:max(0, min(width, len(b) - off))]
    return bytes(b)

stories = f'{SH}/models/stories260K/tinyllamas-stories-260k-f32.gguf'
text = os.path.join(WORK, 'text.txt')
open(text, 'w').write('Once upon a time there was a little cat. It liked to play in the sun. ' * 20)

# --- GGUF header damage (metadata and tensor infos) -----------------------------------------------------------
g = open(stories, 'rb').read()
# find the start of tensor data roughly: search for the alignment padding after the last tensor info: use 1/8 of the file's header guess
header_end = min(len(g), 40000)
for i in range(int(os.environ.get('N_GGUF', 60))):
    d = mutate_bytes(g, 24, header_end, n=rng.choice([1, 1, 2, 3]))
    p = os.path.join(WORK, f'g{i}.gguf'); open(p, 'wb').write(d)
    if i % 3 == 0: run('gguf', ['inspect', p, '--check'], f'g{i}')
    elif i % 3 == 1: run('gguf', ['perplexity', p, '--file', text, '--ctx', '64'], f'g{i}')
    else: run('gguf', ['generate', p, '--prompt', 'Once', '-n', '8', '--temperature', '0'], f'g{i}')
    os.remove(p)
for i, cut in enumerate(sorted(rng.sample(range(10, len(g) - 1), int(os.environ.get('N_CUT', 8))))):
    p = os.path.join(WORK, f'gt{i}.gguf'); open(p, 'wb').write(g[:cut])
    run('gguf-trunc', ['inspect', p, '--check'], f'cut {cut}', expect_error=True); os.remove(p)

# --- an HF directory (converted from the GGUF), then damaged safetensors headers and config.json ----------
hf = os.path.join(WORK, 'hf')
if not os.path.exists(os.path.join(hf, 'config.json')):
    subprocess.run(['dotnet', HONE, 'convert', stories, '--out', hf], check=True, capture_output=True)
st = open(os.path.join(hf, 'model.safetensors'), 'rb').read()
hlen = struct.unpack('<Q', st[:8])[0]; header = json.loads(st[8:8 + hlen]); body = st[8 + hlen:]
def write_st(dirp, hdr, body_bytes, raw_header=None):
    shutil.copytree(hf, dirp, dirs_exist_ok=True)
    hb = raw_header if raw_header is not None else json.dumps(hdr).encode()
    open(os.path.join(dirp, 'model.safetensors'), 'wb').write(struct.pack('<Q', len(hb)) + hb + body_bytes)
extremes = [0, -1, 1, 2**31, 2**32 + 1, 2**40, 2**53, 2**62, 2**63 - 1, 'x', None, [1], 1.5, True]
names = [k for k in header if k != '__metadata__']
for i in range(int(os.environ.get('N_ST', 40))):
    h = json.loads(json.dumps(header)); case = ''
    t = rng.choice(names); what = rng.choice(['dtype', 'shape', 'offsets', 'delete', 'rename', 'extra', 'raw'])
    raw = None
    if what == 'dtype': h[t]['dtype'] = rng.choice(['F64', 'I8', 'BOOL', 'Q4', '', 5, None]); case = f'{t} dtype {h[t]["dtype"]}'
    elif what == 'shape':
        s = list(h[t]['shape']); j = rng.randrange(len(s)); s[j] = rng.choice(extremes); h[t]['shape'] = rng.choice([s, [], s + [1], 'x']); case = f'{t} shape {h[t]["shape"]}'
    elif what == 'offsets':
        o = list(h[t]['data_offsets']); j = rng.randrange(2); o[j] = rng.choice(extremes + [o[0] + 4, o[1] - 4]); h[t]['data_offsets'] = o; case = f'{t} offsets {o}'
    elif what == 'delete': del h[t]; case = f'{t} deleted'
    elif what == 'rename': h[t + 'x'] = h.pop(t); case = f'{t} renamed'
    elif what == 'extra': h['model.layers.99.mlp.up_proj.weight'] = dict(h[t]); case = 'extra tensor aliasing ' + t
    else:
        hb = json.dumps(header).encode(); raw = mutate_bytes(hb, 0, len(hb), 1); case = 'header bytes'
    d = os.path.join(WORK, f's{i}')
    write_st(d, h, body, raw)
    run('safetensors', ['inspect', d, '--check'] if i % 2 else ['generate', d, '--prompt', 'Once', '-n', '8', '--temperature', '0'], case, expect_error=what != 'raw')
    shutil.rmtree(d)
cfg = json.load(open(os.path.join(hf, 'config.json')))
keys = list(cfg.keys())
for i in range(int(os.environ.get('N_CFG', 40))):
    c = json.loads(json.dumps(cfg)); k = rng.choice(keys + ['rope_scaling', 'rope_scaling', 'head_dim'])
    v = rng.choice(extremes + [-5, 0.0, 1e308, float('nan') if False else 1e-300, {}, {'rope_type': 'llama3', 'factor': 0}, 'linear', {'type': 'yarn'}])
    c[k] = v
    d = os.path.join(WORK, f'c{i}'); shutil.copytree(hf, d)
    open(os.path.join(d, 'config.json'), 'w').write(json.dumps(c))
    run('config', ['generate', d, '--prompt', 'Once', '-n', '8', '--temperature', '0'] if i % 2 else ['perplexity', d, '--file', text, '--ctx', '64'], f'{k}={json.dumps(v)}')
    shutil.rmtree(d)

# --- tokenizer.json damage ------------------------------------------------------------------------------------
tk = os.path.join(WORK, 'tk')
if not os.path.exists(tk):
    shutil.copytree(hf, tk); [shutil.copy(os.path.join(SH, 'tokenizers/llama2-hf', f), tk) for f in ('tokenizer.json', 'tokenizer_config.json')]
tok = json.load(open(os.path.join(tk, 'tokenizer.json')))
for i in range(int(os.environ.get('N_TOK', 30))):
    t = json.loads(json.dumps(tok)); case = ''
    m = t['model']; choice = rng.choice(['vocab_id', 'vocab_dup', 'merge', 'type', 'added', 'normalizer', 'pretok', 'byte_fallback'])
    if choice == 'vocab_id':
        key = rng.choice(list(m['vocab'])); m['vocab'][key] = rng.choice([-1, 2**31 - 1, 10**12, 'x', None, 1.5]); case = f'vocab[{key!r}]={m["vocab"][key]}'
    elif choice == 'vocab_dup':
        ks = list(m['vocab']); m['vocab'][ks[5]] = m['vocab'][ks[6]]; case = 'two tokens one id'
    elif choice == 'merge':
        if m.get('merges'): m['merges'][rng.randrange(len(m['merges']))] = rng.choice(['a', '', 'zz qq', ['x'], 5]); case = 'merge broken'
        else: m['merges'] = 'x'; case = 'merges not a list'
    elif choice == 'type': m['type'] = rng.choice(['WordPiece', 'Unigram', 5, None]); case = f'type {m["type"]}'
    elif choice == 'added':
        t['added_tokens'] = t.get('added_tokens', []) + [{'id': rng.choice([-3, 2**40, 'x']), 'content': '<x>', 'special': True}]; case = 'added token id'
    elif choice == 'normalizer': t['normalizer'] = rng.choice([{'type': 'Nope'}, 5, {'type': 'Sequence', 'normalizers': 'x'}]); case = f'normalizer {t["normalizer"]}'
    elif choice == 'pretok': t['pre_tokenizer'] = rng.choice([{'type': 'Split', 'pattern': {'Regex': '(('}, 'behavior': 'Isolated'}, {'type': 'X'}]); case = 'pre_tokenizer'
    else: m['byte_fallback'] = 'yes'; case = 'byte_fallback string'
    d = os.path.join(WORK, f't{i}'); shutil.copytree(tk, d)
    open(os.path.join(d, 'tokenizer.json'), 'w').write(json.dumps(t))
    run('tokenizer', ['tokenize', d, '--text', 'Once upon a time, ünïcode 🙂'], case)
    shutil.rmtree(d)

# --- adapters: a real adapter trained here, then damaged ------------------------------------------------------
data = os.path.join(WORK, 'sft.jsonl')
with open(data, 'w') as f:
    for i in range(40): f.write(json.dumps({'messages': [{'role': 'user', 'content': f'Where is order {i}?'}, {'role': 'assistant', 'content': f'Order {i} shipped on Monday.'}]}) + '\n')
ad = os.path.join(WORK, 'adapter')
if not os.path.exists(os.path.join(ad, 'adapter_config.json')):
    r = subprocess.run(['dotnet', HONE, 'train', stories, '--data', data, '--out', ad, '--max-steps', '3', '--seq-len', '256', '--batch-size', '2', '--template', f'{SH}/chat-templates/llama.cpp/meta-llama-Llama-3.1-8B-Instruct.jinja'], capture_output=True, text=True)
    if r.returncode: print('adapter training failed', r.stderr[-2000:]); sys.exit(1)
ac = json.load(open(os.path.join(ad, 'adapter_config.json')))
for i in range(int(os.environ.get('N_AD', 30))):
    c = json.loads(json.dumps(ac)); k = rng.choice(['r', 'lora_alpha', 'target_modules', 'peft_type', 'use_dora', 'use_rslora', 'lora_dropout', 'bias', 'rank_pattern', 'layers_to_transform', 'fan_in_fan_out'])
    c[k] = rng.choice([0, -1, '8', 5, None, [], ['q_proj'], 'all-linear', 1e39, True, {'q_proj': 2}, 'LOHA', [0]])
    d = os.path.join(WORK, f'a{i}'); shutil.copytree(ad, d)
    open(os.path.join(d, 'adapter_config.json'), 'w').write(json.dumps(c))
    run('adapter', ['perplexity', stories, '--file', text, '--ctx', '64', '--adapter', d] if i % 2 else ['generate', stories, '--prompt', 'Once', '-n', '6', '--temperature', '0', '--adapter', d], f'{k}={json.dumps(c[k])}')
    shutil.rmtree(d)
ast = open(os.path.join(ad, 'adapter_model.safetensors'), 'rb').read()
ahl = struct.unpack('<Q', ast[:8])[0]
for i in range(int(os.environ.get('N_ADST', 10))):
    d = os.path.join(WORK, f'ab{i}'); shutil.copytree(ad, d)
    open(os.path.join(d, 'adapter_model.safetensors'), 'wb').write(mutate_bytes(ast, 8, 8 + ahl, 1) if i % 2 else ast[:rng.randrange(8, len(ast))])
    run('adapter-st', ['generate', stories, '--prompt', 'Once', '-n', '6', '--adapter', d], f'adapter safetensors {"bytes" if i % 2 else "truncated"}')
    shutil.rmtree(d)

# --- training data: JSONL and CSV -------------------------------------------------------------------------------
lines = open(data).read().splitlines()
def damaged_line():
    k = rng.randrange(12)
    return [b'{"messages": [', b'\xff\xfe{"messages": []}', b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 5}]}',
            b'{"messages": [{"role": "wizard", "content": "a"}]}', b'{"messages": "x"}', b'[]', b'{"text": null}', b'{"messages": [], "messages": []}',
            b'{"instruction": 7, "output": "x"}', b'{"conversations": [{"from": "human"}]}', b'{"messages": [{"role": "user", "content": "' + b'a' * 200000 + b'"}]}',
            b'\x00\x00\x00'][k]
for i in range(int(os.environ.get('N_DATA', 20))):
    b = [l.encode() for l in lines]; b[rng.randrange(len(b))] = damaged_line()
    p = os.path.join(WORK, f'd{i}.jsonl'); open(p, 'wb').write(b'\n'.join(b) + b'\n')
    run('jsonl', ['train', stories, '--data', p, '--out', os.path.join(WORK, f'o{i}'), '--max-steps', '1', '--seq-len', '256', '--batch-size', '1',
                  '--template', f'{SH}/chat-templates/llama.cpp/meta-llama-Llama-3.1-8B-Instruct.jinja'], f'line damage {i}')
    run('jsonl-stats', ['data', 'stats', p], f'line damage {i}')
    shutil.rmtree(os.path.join(WORK, f'o{i}'), ignore_errors=True); os.remove(p)
csvsrc = f'{SH}/datasets/bitext-customer-support/Bitext_Sample_Customer_Support_Training_Dataset.csv'
csvhead = open(csvsrc, 'rb').read()[:20000]
for i in range(10):
    p = os.path.join(WORK, f'c{i}.csv'); open(p, 'wb').write(mutate_bytes(csvhead, 0, len(csvhead), 3) if i % 2 else csvhead[:rng.randrange(1, len(csvhead))] + b'"unterminated')
    run('csv', ['train', stories, '--data', p, '--out', os.path.join(WORK, f'oc{i}'), '--max-steps', '1', '--seq-len', '256', '--batch-size', '1',
                '--template', f'{SH}/chat-templates/llama.cpp/meta-llama-Llama-3.1-8B-Instruct.jinja'], f'csv damage {i}')
    shutil.rmtree(os.path.join(WORK, f'oc{i}'), ignore_errors=True); os.remove(p)

# --- chat templates -------------------------------------------------------------------------------------------------
tpl = open(f'{SH}/chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja').read()
hostile = ['{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}', "{{ '%0999999999d' % 5 }}",
           '{% set s = "ab" %}{% for i in range(60) %}{% set s = s + s %}{% endfor %}{{ s }}', '{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}',
           '{{ raise_exception("no") }}', '{% if %}', '{{ x | nofilter }}', '{% for %}', '{{ messages[10**20] }}', '{{ "a" * 10**12 }}']
for i in range(int(os.environ.get('N_TPL', 20))):
    if i < len(hostile): t = hostile[i]; case = hostile[i][:50]
    else:
        j = rng.randrange(len(tpl)); t = tpl[:j] + rng.choice(['{%', '}}', '{{', '%}', '{% endfor %}', '']) + tpl[j + rng.randrange(0, 5):]; case = f'cut at {j}'
    p = os.path.join(WORK, f'tpl{i}.jinja'); open(p, 'w').write(t)
    run('template', ['chat', stories, '--template', p, '-n', '4'], case, stdin='hello\n', timeout=180)
    os.remove(p)

# --- numeric options -------------------------------------------------------------------------------------------------
opts = [['generate', stories, '--prompt', 'a', '--ctx', '100000000'], ['generate', stories, '--prompt', 'a', '-n', '-1'], ['generate', stories, '--prompt', 'a', '--top-k', '-5'],
        ['generate', stories, '--prompt', 'a', '--top-p', '2'], ['generate', stories, '--prompt', 'a', '--temperature', 'nan'], ['generate', stories, '--prompt', 'a', '--threads', '100000'],
        ['perplexity', stories, '--file', text, '--ctx', '1'], ['perplexity', stories, '--file', text, '--ctx', '99999999999'], ['perplexity', stories, '--file', text, '--stride', '0'],
        ['train', stories, '--data', data, '--out', os.path.join(WORK, 'ox'), '--lora-r', '100000'], ['train', stories, '--data', data, '--out', os.path.join(WORK, 'ox'), '--seq-len', '99999999'],
        ['train', stories, '--data', data, '--out', os.path.join(WORK, 'ox'), '--lr', 'inf'], ['train', stories, '--data', data, '--out', os.path.join(WORK, 'ox'), '--batch-size', '0'],
        ['generate', stories, '--prompt', 'a', '--seed', '-1'], ['generate', stories, '--prompt', 'a', '--min-p', '-0.5'], ['convert', stories, '--out', os.path.join(WORK, 'x.gguf'), '--type', 'q3_k'],
        ['eval', stories, '--task', 'nope', '--out', os.path.join(WORK, 'e.json')], ['eval', stories, '--task', 'mmlu', '--limit', '0', '--out', os.path.join(WORK, 'e.json')]]
for o in opts: run('options', o, ' '.join(o[2:])[:70], expect_error=True)

json.dump(results, open(os.path.join(WORK, 'results.json'), 'w'), indent=1)
bad = [r for r in results if r['bad']]
print(f'\n{len(results)} runs, {len(bad)} flagged')
for r in bad: print(r)
