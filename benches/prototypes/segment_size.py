# Prototype measurement for issue 3 (segment + index size on Loghub); see
# docs/decisions/0002-segment-size-measurements.md. Run:
#   python3 -m venv /tmp/proto && /tmp/proto/bin/pip install pyroaring zstandard
#   /tmp/proto/bin/python benches/prototypes/segment_size.py [LOGHUB_DIR]
# several block sizes, zstd levels and index granularities?
import re, sys, glob, os, zstandard
from pyroaring import BitMap
TOK = re.compile(r'[^\W]+', re.UNICODE)  # letters, digits, underscore
root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/loghub"
files = sorted(glob.glob(root + '/*/*_2k.log'))

def lines_of(f):
    return open(f, 'rb').read().decode('utf-8', 'replace').split('\n')[:-1]

def msg_size(lines, block_rows, level):
    total = 0
    c = zstandard.ZstdCompressor(level=level)
    for i in range(0, len(lines), block_rows):
        blob = '\n'.join(lines[i:i+block_rows]).encode()
        total += len(c.compress(blob))
    return total

def index_size(lines, gran, level):
    postings = {}
    for i, l in enumerate(lines):
        for t in set(x.lower() for x in TOK.findall(l)):
            postings.setdefault(t, set()).add(i // gran)
    terms = sorted(postings)
    dict_bytes = '\n'.join(terms).encode()
    bm = b''.join(BitMap(sorted(v)).serialize() for v in (postings[t] for t in terms))
    c = zstandard.ZstdCompressor(level=level)
    return len(c.compress(dict_bytes)), len(c.compress(bm)), len(terms)

def run(name, lines):
    raw = sum(len(l) + 1 for l in lines)
    z3 = len(zstandard.ZstdCompressor(level=3).compress(('\n'.join(lines) + '\n').encode()))
    out = [name, raw, z3]
    for br, lvl in [(1024, 3), (4096, 3), (4096, 9), (4096, 19)]:
        out.append(msg_size(lines, br, lvl))
    for g in [1, 64, 256, 1024]:
        d, b, n = index_size(lines, g, 3)
        out.append(d + b)
    return out

hdr = ['sys', 'raw', 'z3', 'm1k/3', 'm4k/3', 'm4k/9', 'm4k/19', 'ix_row', 'ix_64', 'ix_256', 'ix_1k']
print('\t'.join(hdr))
alll = []
for f in files:
    ls = lines_of(f)
    alll += ls
    print('\t'.join(str(x) for x in run(os.path.basename(f).split('_')[0], ls)))
print('\t'.join(str(x) for x in run('ALL', alll)))
