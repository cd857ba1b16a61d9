"""Prototype for the next step of issue 18 item 3 (docs/decisions/0011): in the
CLP split of `_msg`, a word position of a template layout (the template with its
words blanked) that sees more than T distinct words becomes a string variable.
Prints, per system or generated kind, the templates before and after, the zstd -3
size of their text, and the word variables per row.

    python3 benches/prototypes/word_variables.py 8,32 ../shared/data/loghub DIR_OF_GENERATED_LOGS

(DIR_OF_GENERATED_LOGS: `template-eval --generated 50000 --dump DIR`; the first
20,000 lines of each `.log` are read.) Time runs are blanked first, as the writer
does. A measurement, not the writer's code.
"""
import re,subprocess,sys,collections,glob,os
def z(b,l=3): return len(subprocess.run(['zstd','-%d'%l,'-c'],input=b,capture_output=True).stdout)
tokre=re.compile(r'[A-Za-z0-9_]+')
timere=re.compile(r'(?<![A-Za-z0-9_])(?:\d+(?:[-/.]\d+)*[ T])?\d{1,2}:\d\d:\d\d(?:[.,]\d+)?(?![A-Za-z0-9_])')
def analyse(name,lines,T):
    rows=[]
    for l in lines:
        l=timere.sub('\x14',l)
        parts=[];words=[]
        pos=0
        for m in tokre.finditer(l):
            parts.append(l[pos:m.start()]); t=m.group()
            if any(c.isdigit() for c in t): parts.append('\x11')
            else: parts.append('\x15'); words.append(t)
            pos=m.end()
        parts.append(l[pos:])
        rows.append((''.join(parts),tuple(words)))
    bysk=collections.defaultdict(lambda: collections.defaultdict(set))
    for s,w in set(rows):
        for k,x in enumerate(w): bysk[s][k].add(x)
    out=set(); wv=0
    for s,w in rows:
        var=[len(bysk[s][k])>T for k in range(len(w))]
        out.add((s,tuple(None if v else x for v,x in zip(var,w))))
        wv+=sum(var)
    def text(ts): return '\n'.join(s+'|'+' '.join(x or '*' for x in w) for s,w in ts).encode()
    print(f"{name:32} T={T:3} logtypes {len(set(rows)):6} -> {len(out):6}  frame z3 {z(text(set(rows))):8} -> {z(text(out)):8}  word-vars/row {wv/len(rows):.2f}")
for T in [int(x) for x in sys.argv[1].split(',')]:
    for s in ["Android","Linux","Windows","Hadoop","BGL","OpenSSH"]:
        analyse(s, open(f"{sys.argv[2]}/{s}/{s}_2k.log").read().split("\n"), T)
    for f in sorted(glob.glob(f"{sys.argv[3]}/*.log")):
        analyse(os.path.basename(f)[:30], open(f).read().split("\n")[:20000], T)
