# Prototype (issue 3): size of a CLP-style message encoding plus a token index on
# Loghub, against zstd -3 of the raw text. See
# docs/decisions/0002-segment-size-measurements.md. Run:
#   python3 -m venv /tmp/proto && /tmp/proto/bin/pip install pyroaring zstandard
#   /tmp/proto/bin/python benches/prototypes/clp_size.py [LOGHUB_DIR]
#
# Message = logtype (separators and digit-free tokens, with a placeholder per
# variable) + variables (tokens containing a digit). Integer variables are packed as
# varints; the others go through a per-segment dictionary, which doubles as the term
# dictionary of the index for those tokens. Digit-free tokens are indexed by logtype.
import glob, re, sys
import zstandard

args = [a for a in sys.argv[1:] if not a.startswith('--')]
root = args[0] if args else '../shared/data/loghub'
files = sorted(glob.glob(root + '/*/*_2k.log'))
SPLIT = re.compile(r'([^\W]+)', re.UNICODE)


def z(b, level):
    return len(zstandard.ZstdCompressor(level=level).compress(bytes(b)))


def varint(n, out):
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def encode(lines, level, block_rows):
    logtypes, lt_ids, var_dict = {}, bytearray(), {}
    var_ids, ints = bytearray(), bytearray()
    word_post = {}   # word -> set(logtype id)
    var_post = {}    # var id -> set(block)
    int_post = {}    # int value -> set(block)
    slots = {}       # (logtype, slot) -> list of ints, for per-slot delta columns
    row_ints = []
    for row, line in enumerate(lines):
        parts = SPLIT.split(line)
        lt = []
        for i, p in enumerate(parts):
            if i % 2 == 0:
                lt.append(p)
            elif any(c.isdigit() for c in p):
                if p.isdigit() and (p == '0' or p[0] != '0') and len(p) < 19:
                    lt.append('\x11')
                    varint(int(p), ints)
                    int_post.setdefault(int(p), set()).add(row // block_rows)
                    row_ints.append(int(p))
                else:
                    lt.append('\x12')
                    vid = var_dict.setdefault(p, len(var_dict))
                    varint(vid, var_ids)
                    var_post.setdefault(vid, set()).add(row // block_rows)
            else:
                lt.append(p)
        key = ''.join(lt)
        lid = logtypes.setdefault(key, len(logtypes))
        for k, v in enumerate(row_ints):
            slots.setdefault((lid, k), []).append(v)
        row_ints.clear()
        varint(lid, lt_ids)
        for i, p in enumerate(parts):
            if i % 2 == 1 and not any(c.isdigit() for c in p):
                word_post.setdefault(p.lower(), set()).add(lid)
    lt_dict = '\n'.join(logtypes).encode()
    vdict = '\n'.join(var_dict).encode()
    words = sorted(word_post)
    wdict = '\n'.join(words).encode()
    wpost = bytearray()
    for w in words:
        prev = 0
        varint(len(word_post[w]), wpost)
        for x in sorted(word_post[w]):
            varint(x - prev, wpost)
            prev = x
    vpost = bytearray()
    for vid in range(len(var_dict)):
        blocks = sorted(var_post[vid])
        prev = 0
        varint(len(blocks), vpost)
        for x in blocks:
            varint(x - prev, vpost)
            prev = x
    slot_cols = bytearray()
    for key in sorted(slots):
        prev = 0
        for v in slots[key]:
            d = v - prev
            varint((d << 1) ^ (d >> 63) if d >= 0 else ((-d) << 1) - 1, slot_cols)
            prev = v
    int_terms = sorted(int_post)
    int_index = bytearray()
    prev = 0
    for v in int_terms:
        varint(v - prev, int_index)
        prev = v
        blocks = sorted(int_post[v])
        varint(len(blocks), int_index)
        pb = 0
        for b in blocks:
            varint(b - pb, int_index)
            pb = b
    parts = {
        'logtype_dict': z(lt_dict, level), 'logtype_ids': z(lt_ids, level),
        'var_dict': z(vdict, level), 'var_ids': z(var_ids, level), 'ints': z(ints, level),
        'word_index': z(wdict, level) + z(wpost, level), 'var_postings': z(vpost, level),
        'int_index': z(int_index, level),
    }
    if PER_SLOT:
        parts['ints'] = z(slot_cols, level)
    return parts, len(logtypes), len(var_dict)


PER_SLOT = '--per-slot' in sys.argv
if PER_SLOT:
    sys.argv.remove('--per-slot')
print('system   raw      zstd-3   zstd-19  clp+index(-3) clp+index(-19)  logtypes vars  breakdown(-19)')
everything = []
for f in files + ['ALL']:
    if f == 'ALL':
        lines = everything
        name = 'ALL'
    else:
        lines = open(f, 'rb').read().decode('utf-8', 'replace').split('\n')[:-1]
        everything += lines
        name = f.split('/')[-1].split('_')[0]
    raw = ('\n'.join(lines) + '\n').encode()
    p3, _, _ = encode(lines, 3, 256)
    p19, nl, nv = encode(lines, 19, 256)
    print(f"{name:8} {len(raw):8} {z(raw, 3):8} {z(raw, 19):8} {sum(p3.values()):13} {sum(p19.values()):14}  {nl:8} {nv:5}  {p19}")
