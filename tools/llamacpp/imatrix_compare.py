#!/usr/bin/env python3
"""Compares two llama.cpp imatrix GGUF files (in_sum2 and counts per tensor): prints the largest relative difference of
the per-column mean squares (in_sum2 / count), the counts, and the metadata. Standard library only.
  imatrix_compare.py A.gguf B.gguf [--tolerance 1e-4]"""
import struct, sys

SIZES = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


def read_gguf(path):
    data = open(path, 'rb').read()
    at = 0

    def take(fmt):
        nonlocal at
        v = struct.unpack_from('<' + fmt, data, at)
        at += struct.calcsize('<' + fmt)
        return v[0]

    def string():
        nonlocal at
        n = take('Q')
        s = data[at:at + n].decode('utf-8')
        at += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take('I'), take('Q')
            return [value(et) for _ in range(n)]
        return take(SIZES[t])

    assert data[:4] == b'GGUF', f'{path}: not GGUF'
    at = 4
    take('I')
    n_tensors, n_kv = take('Q'), take('Q')
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take('I'))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take('Q') for _ in range(take('I'))]
        t, off = take('I'), take('Q')
        infos.append((name, dims, t, off))
    align = meta.get('general.alignment', 32)
    start = (at + align - 1) // align * align
    tensors = {}
    for name, dims, t, off in infos:
        assert t == 0, f'{name}: type {t}, not f32'
        n = 1
        for d in dims:
            n *= d
        tensors[name] = (dims, struct.unpack_from(f'<{n}f', data, start + off))
    return meta, tensors


def main():
    a_path, b_path = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[sys.argv.index('--tolerance') + 1]) if '--tolerance' in sys.argv else 1e-4
    ma, ta = read_gguf(a_path)
    mb, tb = read_gguf(b_path)
    for k in ('imatrix.chunk_count', 'imatrix.chunk_size', 'imatrix.datasets'):
        print(f'{k}: {ma.get(k)!r} vs {mb.get(k)!r}')
    names = sorted(n[:-len('.in_sum2')] for n in ta if n.endswith('.in_sum2'))
    names_b = sorted(n[:-len('.in_sum2')] for n in tb if n.endswith('.in_sum2'))
    if names != names_b:
        print('tensor sets differ:', sorted(set(names) ^ set(names_b)))
    worst, worst_name, count_mismatch = 0.0, None, []
    for n in sorted(set(names) & set(names_b)):
        da, sa = ta[n + '.in_sum2']
        db, sb = tb[n + '.in_sum2']
        ca, cb = ta[n + '.counts'][1], tb[n + '.counts'][1]
        while len(da) > 1 and da[-1] == 1: da = da[:-1]
        while len(db) > 1 and db[-1] == 1: db = db[:-1]
        if da != db:
            print(f'{n}: shape {da} vs {db}')
            continue
        if list(ca) != list(cb):
            count_mismatch.append((n, ca, cb))
        cols = da[0]
        for i, (x, y) in enumerate(zip(sa, sb)):
            mx, my = x / max(ca[i // cols], 1), y / max(cb[i // cols], 1)
            rel = abs(mx - my) / max(abs(mx), abs(my), 1e-30)
            if rel > worst:
                worst, worst_name = rel, f'{n}[{i}] {mx:.7g} vs {my:.7g}'
    print(f'tensors compared: {len(set(names) & set(names_b))}; count mismatches: {len(count_mismatch)}')
    for n, ca, cb in count_mismatch[:5]:
        print(f'  {n}: counts {list(ca)[:8]} vs {list(cb)[:8]}')
    print(f'largest relative difference of mean squares: {worst:.3g} at {worst_name}')
    ok = worst <= tol and not count_mismatch and names == names_b
    print('AGREE' if ok else 'DIFFER', f'(tolerance {tol})')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
