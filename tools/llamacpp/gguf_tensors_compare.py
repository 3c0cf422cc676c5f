#!/usr/bin/env python3
"""Compares the tensor bytes of two GGUF model files (f32, f16, q4_0, q8_0, q4_k, q6_k): which tensors are byte-identical.
  gguf_tensors_compare.py A.gguf B.gguf"""
import struct, sys
SIZES = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
BLK = {0:(1,4),1:(1,2),2:(32,18),8:(32,34),12:(256,144),14:(256,210),30:(1,2)}
def read(path):
    data = open(path,'rb').read(); at = 4
    def take(f):
        nonlocal at; v = struct.unpack_from('<'+f, data, at); at += struct.calcsize('<'+f); return v[0]
    def string():
        nonlocal at; n = take('Q'); s = data[at:at+n].decode(); at += n; return s
    def value(t):
        if t == 8: return string()
        if t == 9:
            et, n = take('I'), take('Q'); return [value(et) for _ in range(n)]
        return take(SIZES[t])
    take('I'); nt, nkv = take('Q'), take('Q'); meta = {}
    for _ in range(nkv):
        k = string(); meta[k] = value(take('I'))
    infos = []
    for _ in range(nt):
        name = string(); dims = [take('Q') for _ in range(take('I'))]; t, off = take('I'), take('Q'); infos.append((name, dims, t, off))
    al = meta.get('general.alignment', 32); start = (at + al - 1)//al*al; out = {}
    for name, dims, t, off in infos:
        n = 1
        for d in dims: n *= d
        be, bb = BLK[t]; out[name] = (t, data[start+off:start+off+n//be*bb])
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
same = diff = 0
for n in sorted(a):
    if n not in b: print('missing', n); continue
    if a[n] == b[n]: same += 1
    else:
        diff += 1; print('differs:', n, 'types', a[n][0], b[n][0], 'bytes equal %.1f%%' % (100*sum(x==y for x,y in zip(a[n][1], b[n][1]))/max(1,len(a[n][1]))))
print(f'{same} tensors identical, {diff} differ')
