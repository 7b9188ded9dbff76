import os, time, torch
os.environ.setdefault("HF_HUB_OFFLINE","1")
from longrecall.memory.api import build_prompt, SYSTEM
from longrecall.memory.reader import load_reader
from longrecall.models import load_tokenizer
from longrecall.niah import GenSpec, generate_sample
tok = load_tokenizer("default")
read = load_reader("reader-v1", max_new_tokens=64)
def qfirst(q, ctx): return f"Question: {q}\nNotes:\n{ctx}\n\nAnswer:"
tot={0:[0,0,0.0],1:[0,0,0.0]}
for seed,n in [(1,32),(2,32),(3,32),(4,32)]:
    s = generate_sample(GenSpec(task="all_needles", length=4096, n_needles=n, seed=seed, needle_kind=["number","word","uuid","number"][seed-1]), tok)
    tg=[d for d in s.needles if d["role"]=="target"]
    for k,f in ((0,build_prompt),(1,qfirst)):
        ps=[f(s.question,d["text"]) for d in tg]
        t=time.perf_counter(); outs=read.many(ps, cap=24); dt=time.perf_counter()-t
        tot[k][0]+=sum(d["value"] in o for d,o in zip(tg,outs)); tot[k][1]+=len(tg); tot[k][2]+=dt
    print(seed, s.question, tot, outs[:2], flush=True)
