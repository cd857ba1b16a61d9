# Prototype: term dictionary vs postings sizes per Loghub system (issue 3); see
# docs/decisions/0002-segment-size-measurements.md. Run like segment_size.py.
import re, glob, zstandard
from pyroaring import BitMap
TOK = re.compile(r'[^\W]+', re.UNICODE)
import sys
files = sorted(glob.glob((sys.argv[1] if len(sys.argv) > 1 else '../shared/data/loghub') + '/*/*_2k.log'))
z = lambda b, l=3: len(zstandard.ZstdCompressor(level=l).compress(b))
tot = {}
for f in files + ['ALL']:
    ls = (open(f,'rb').read().decode('utf-8','replace').split('\n')[:-1]) if f != 'ALL' else allls
    if f == files[0]: allls = []
    if f != 'ALL': allls += ls
    post = {}
    for i, l in enumerate(ls):
        for t in set(x.lower() for x in TOK.findall(l)):
            post.setdefault(t, []).append(i)
    terms = sorted(post)
    d = '\n'.join(terms).encode()
    single = sum(1 for t in terms if len(post[t]) == 1)
    # postings as roaring (row level) vs delta-varint
    bm = b''.join(BitMap(post[t]).serialize() for t in terms)
    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7f; n >>= 7
            if n: out.append(b | 0x80)
            else: out.append(b); return bytes(out)
    dv = bytearray()
    for t in terms:
        prev = 0
        dv += varint(len(post[t]))
        for r in post[t]:
            dv += varint(r - prev); prev = r
    name = f.split('/')[-1].split('_')[0]
    print(f"{name:8} terms {len(terms):6} singletons {single:6} dict_z3 {z(d):7} dict_z19 {z(d,19):7} roaring_z3 {z(bm):7} deltavarint_z3 {z(bytes(dv)):7}")
