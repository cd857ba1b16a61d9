# Prototype (decision 0003): like clp_sorted_dict.py but integers kept as decimal
# strings in one term dictionary cut into blocks of N entries. Run:
#   /tmp/proto/bin/python benches/prototypes/clp_one_dict.py N
# all var tokens as strings in one sorted dictionary (the index), term blocks of TB entries each zstd'd
import glob, re, sys, zstandard
root='../shared/data/loghub'
files=sorted(glob.glob(root+'/*/*_2k.log'))
SPLIT=re.compile(r'([^\W]+)')
def vi(n,o):
    while True:
        b=n&0x7f; n>>=7
        if n: o.append(b|0x80)
        else: o.append(b); return
def zz(d): return (d<<1) if d>=0 else ((-d)<<1)-1
L=3; BR=8192
TB=int(sys.argv[1])
def z(b): return len(zstandard.ZstdCompressor(level=L).compress(bytes(b)))
def post(s,o):
    s=sorted(s); vi(len(s),o); p=0
    for x in s: vi(x-p,o); p=x
def enc(lines):
    lts={}; ltids=bytearray(); rows=[]; terms={}  # key -> set(blocks)
    for r,line in enumerate(lines):
        parts=SPLIT.split(line); lt=[]; vs=[]
        for i,p in enumerate(parts):
            if i%2==0: lt.append(p); continue
            low=''.join(c.lower() if c.isascii() else c for c in p)
            if any(c.isdigit() for c in p):
                key=low if low==p else low+'\0'+''.join('1' if c!=d else '0' for c,d in zip(p,low))
                lt.append('\x12'); vs.append(key)
            else:
                key=low; lt.append(p)
            terms.setdefault(key,set()).add(r//BR)
        lid=lts.setdefault(''.join(lt),len(lts)); vi(lid,ltids); rows.append((lid,vs))
    keys=sorted(terms); ordn={k:i for i,k in enumerate(keys)}
    idx=0; dirb=bytearray()
    for s in range(0,len(keys),TB):
        o=bytearray(); prev=b''
        for k in keys[s:s+TB]:
            kb=k.encode(); c=0
            while c<min(len(kb),len(prev)) and kb[c]==prev[c]: c+=1
            vi(c,o); vi(len(kb)-c,o); o+=kb[c:]; prev=kb
            post(terms[k],o)
        idx+=z(o)+12; dirb+=keys[s].encode()+b'\0'
    idx+=z(dirb)
    cols={}
    for r,(lid,vs) in enumerate(rows):
        for k,key in enumerate(vs): cols.setdefault((r//BR,lid,k),[]).append(ordn[key])
    colb=bytearray()
    for key in sorted(cols):
        p=0
        for o in cols[key]: vi(zz(o-p),colb); p=o
    res={'lt_dict':z('\n'.join(lts).encode()),'lt_ids':z(ltids),'var_cols':z(colb),'index':idx}
    return sum(res.values()),res
allL=[]; T=0; T3=0
for f in files+['ALL']:
    if f=='ALL': lines=allL; name='ALL'
    else:
        lines=open(f,'rb').read().decode('utf-8','replace').split('\n')[:-1]; allL+=lines; name=f.split('/')[-1].split('_')[0]
    raw=('\n'.join(lines)+'\n').encode()
    tot,res=enc(lines)
    z3=len(zstandard.ZstdCompressor(level=3).compress(raw))
    if name!='ALL': T+=tot; T3+=z3
    print(f"{name:8} z3 {z3:7} clp3 {tot:7} {tot/z3:.2f} {res}")
print('sum per system', T, 'vs z3 sum', T3)
