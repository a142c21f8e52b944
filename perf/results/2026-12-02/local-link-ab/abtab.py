import json,glob,sys,os,re
root=sys.argv[1]
rows={}
for d in sorted(glob.glob(root+'/*-*-*/')):
    m=re.search(r'-(old|new)-(\d+)/$',d)
    if not m: continue
    v,i=m.groups()
    for c in sorted(glob.glob(d+'cells/*.json')):
        j=json.load(open(c))
        t=j['loadgen']['total']
        name=os.path.basename(c)[:-5].replace('toasty-','')
        rows.setdefault(name,{}).setdefault(v,[]).append((t['ops_per_s'],t['mib_per_s'],t['latency_us']['p50'],t['latency_us']['p99'],j['server_cpu']['sum_us_per_request'],j['load_average_before']))
for name,vs in rows.items():
    for v in ('old','new'):
        l=vs.get(v,[])
        if not l: continue
        mean=lambda k: sum(x[k] for x in l)/len(l)
        print(f"{name:24s} {v}: ops/s "+" / ".join(f"{x[0]:.0f}" for x in l)+f"  (mean {mean(0):.0f})  MiB/s mean {mean(1):.0f}  p50 "+"/".join(str(x[2]) for x in l)+"  p99 "+"/".join(str(x[3]) for x in l)+"  cpu_us "+"/".join(f"{x[4]:.1f}" for x in l)+f" (mean {mean(4):.1f})")
