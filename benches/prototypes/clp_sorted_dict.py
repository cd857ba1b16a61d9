# Prototype (issue 3, decision 0003): CLP-style messages whose variables are ordinals
# into sorted dictionaries that double as the index. Run:
#   /tmp/proto/bin/python benches/prototypes/clp_sorted_dict.py [ZSTD_LEVEL]
# (venv as in clp_size.py). Prints bytes per part, per system and for all ten.
import glob, re, sys, zstandard
root=sys.argv[2] if len(sys.argv) > 2 else '../shared/data/loghub'
files=sorted(glob.glob(root+'/*/*_2k.log'))
SPLIT=re.compile(r'([^\W]+)')
L=int(sys.argv[1]) if len(sys.argv)>1 else 3
BR=8192
def z(b): return len(zstandard.ZstdCompressor(level=L).compress(bytes(b)))
def vi(n,o):
    while True:
        b=n&0x7f; n>>=7
        if n: o.append(b|0x80)
        else: o.append(b); return
def zz(d): return (d<<1) if d>=0 else ((-d)<<1)-1
def isint(p): return p.isdigit() and p.isascii() and (p=='0' or p[0]!='0') and len(p)<19
def frontcode(keys):
    o=bytearray(); prev=b''
    for k in keys:
        k=k.encode(); s=0
        while s<min(len(k),len(prev)) and k[s]==prev[s]: s+=1
        vi(s,o); vi(len(k)-s,o); o+=k[s:]; prev=k
    return o
def postings(sets):
    o=bytearray()
    for s in sets:
        s=sorted(s); vi(len(s),o); p=0
        for x in s: vi(x-p,o); p=x
    return o
def enc(lines):
    lts={}; ltids=bytearray(); ints=set(); strs=set(); rows=[]
    words={}
    for r,line in enumerate(lines):
        parts=SPLIT.split(line); lt=[]; vs=[]
        for i,p in enumerate(parts):
            if i%2==0: lt.append(p)
            elif any(c.isdigit() for c in p):
                if isint(p): lt.append('\x11'); ints.add(int(p)); vs.append(('i',int(p)))
                else: lt.append('\x12'); strs.add(p); vs.append(('s',p))
            else:
                lt.append(p); words.setdefault(p.lower(),set()).add(r//BR)
        lid=lts.setdefault(''.join(lt),len(lts)); vi(lid,ltids); rows.append((lid,vs))
    isorted=sorted(ints); iord={v:i for i,v in enumerate(isorted)}
    ssorted=sorted(strs,key=lambda s:(s.lower(),s)); sord={v:i for i,v in enumerate(ssorted)}
    idict=bytearray(); p=0
    for v in isorted: vi(v-p,idict); p=v
    sdict=frontcode(ssorted)
    # var ordinals per (logtype,slot) delta-zigzag
    cols={}; stream=bytearray()
    ipost={}; spost={}
    for r,(lid,vs) in enumerate(rows):
        for k,(t,v) in enumerate(vs):
            o=iord[v] if t=='i' else sord[v]
            cols.setdefault((lid,k),[]).append(o); vi(o,stream)
            (ipost if t=='i' else spost).setdefault(o,set()).add(r//BR)
    colb=bytearray()
    for key in sorted(cols):
        p=0
        for o in cols[key]: vi(zz(o-p),colb); p=o
    wk=sorted(words)
    res={'lt_dict':z('\n'.join(lts).encode()),'lt_ids':z(ltids),'int_dict':z(idict),'str_dict':z(sdict),
      'var_cols':z(colb),'var_stream':z(stream),'word_dict':z(frontcode(wk)),'word_post':z(postings(words[w] for w in wk)),
      'int_post':z(postings(ipost[i] for i in range(len(isorted)))),'str_post':z(postings(spost[i] for i in range(len(ssorted))))}
    tot=sum(v for k,v in res.items() if k!='var_stream')
    return tot,res
allL=[]; T=0; T3=0
for f in files+['ALL']:
    if f=='ALL': lines=allL; name='ALL'
    else:
        lines=open(f,'rb').read().decode('utf-8','replace').split('\n')[:-1]; allL+=lines; name=f.split('/')[-1].split('_')[0]
    raw=('\n'.join(lines)+'\n').encode()
    tot,res=enc(lines)
    z3=len(zstandard.ZstdCompressor(level=3).compress(raw))
    if name!='ALL': T+=tot; T3+=z3
    print(f"{name:8} raw {len(raw):8} z3 {z3:7} clp2 {tot:7} {tot/z3:.2f} {res}")
print('sum per system', T, 'vs z3 sum', T3)
