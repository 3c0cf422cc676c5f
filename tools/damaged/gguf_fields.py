#!/usr/bin/env python3
"""Targeted GGUF damage (a v2/v3 file): extreme values written into the numeric fields of the key-values (counts,
lengths, types, values) and of the tensor infos (n_dims, dims, type, offset), each copy run through hone perplexity
or generate; flags hangs, exit codes other than 0/1, "unexpected" and stack traces.

    python3 tools/damaged/gguf_fields.py HONE_DLL WORK_DIR SEED MODEL.gguf     (N=150 cases by default)"""
import struct, sys, os, random, subprocess, json
HONE, WORK, SEED = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(SEED); os.makedirs(WORK, exist_ok=True)
src = sys.argv[4]
g = open(src, 'rb').read()
pos = 0
def u32():
    global pos; v = struct.unpack_from('<I', g, pos)[0]; pos += 4; return v
def u64():
    global pos; v = struct.unpack_from('<Q', g, pos)[0]; pos += 8; return v
fields = []  # (offset, width, what)
pos = 4; ver = u32(); fields.append((pos, 8, 'tensor_count')); nt = u64(); fields.append((pos, 8, 'kv_count')); nkv = u64()
sizes = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
def skip_value(t, name):
    global pos
    if t == 8: fields.append((pos, 8, f'{name} string length')); n = u64(); pos += n
    elif t == 9:
        fields.append((pos, 4, f'{name} array type')); at = u32(); fields.append((pos, 8, f'{name} array length')); n = u64()
        for i in range(n): skip_value(at, name + '[]') if at in (8, 9) else None; pos += sizes.get(at, 0) if at not in (8, 9) else 0
    else:
        fields.append((pos, sizes[t], f'{name} value')); pos += sizes[t]
for i in range(nkv):
    fields.append((pos, 8, 'key length')); n = u64(); name = g[pos:pos + n].decode(); pos += n
    fields.append((pos, 4, f'{name} type')); t = u32(); skip_value(t, name)
for i in range(nt):
    n = u64(); name = g[pos:pos + n].decode(); pos += n
    fields.append((pos, 4, f'{name} n_dims')); nd = u32()
    for d in range(nd): fields.append((pos, 8, f'{name} dim{d}')); u64()
    fields.append((pos, 4, f'{name} type')); u32(); fields.append((pos, 8, f'{name} offset')); u64()
# keep few of the array-element string lengths (there are hundreds), all the rest
main = [f for f in fields if '[]' not in f[2]]
arr = [f for f in fields if '[]' in f[2]]
pick = main + rng.sample(arr, min(20, len(arr)))
rng.shuffle(pick)
text = os.path.join(WORK, 'text.txt'); open(text, 'w').write('Once upon a time there was a little cat. ' * 30)
bad = 0; n = 0
for off, width, what in pick[:int(os.environ.get('N', 150))]:
    val = rng.choice([0, 1, 2**(8*width) - 1, 2**(8*width - 1), 2**(8*width - 1) - 1, 2**31, 2**40 if width == 8 else 3, 7, 29, 31, 1000])
    if val >= 2**(8*width): val = 2**(8*width) - 1
    b = bytearray(g); b[off:off + width] = val.to_bytes(width, 'little')
    p = os.path.join(WORK, 'x.gguf'); open(p, 'wb').write(b)
    args = ['generate', p, '--prompt', 'Once', '-n', '6', '--temperature', '0'] if n % 2 else ['perplexity', p, '--file', text, '--ctx', '64']
    try:
        r = subprocess.run(['dotnet', HONE] + args, capture_output=True, text=True, timeout=120, env={**os.environ, 'DOTNET_GCHeapHardLimit': '0x180000000'})
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired: rc, err = 'TIMEOUT', ''
    flags = []
    if rc == 'TIMEOUT': flags.append('hang')
    elif rc not in (0, 1): flags.append(f'rc={rc}')
    if 'unexpected' in err.lower() or '\n   at ' in err: flags.append('unexpected')
    last = (err.strip().splitlines() or [''])[-1][:200]
    print(f"{'BAD ' + ','.join(flags) if flags else 'ok  '} rc={rc} {what}={val} :: {last}", flush=True)
    bad += bool(flags); n += 1
print(f'{n} runs, {bad} flagged')
