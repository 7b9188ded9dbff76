"""Dump the chain questions' evidence (as memory ask builds it) for worlds 0..N at 1M, seed S."""
import json, sys, tempfile
from pathlib import Path
from longrecall.memory import e2e
from longrecall.memory.api import Memory
from longrecall.memory.bench import chars_per_token
size, n, seed, fam = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
out = Path(sys.argv[5])
cpt = chars_per_token(e2e.base_text(40_000, seed))
base = e2e.base_text(int(size * cpt), seed + size)
work = Path(tempfile.mkdtemp())
with open(out, "w") as fh:
    for w in range(n):
        world = e2e.make_world(base, w, seed + size)
        db = work / f"{w}.db"
        mem = Memory(db, embedder=None); mem.add_text(world.text, source=f"world-{w}")
        for it in world.items:
            if (fam != "all" and it.family != fam) or not it.planted or it.family == "all_needles": continue
            try:
                res = mem.ask(it.sample["question"], generate=False, strategy="auto")
                ctx = res.context; chunks = [c.text for c in res.chunks]
            except Exception as e:
                ctx, chunks = "", []; res = None
            fh.write(json.dumps({"world": w, "sample": it.sample, "targets": it.targets, "context": ctx, "chunks": chunks, "trace": [{k: v for k, v in t.items() if k != "chunks"} for t in res.trace], "strategy": res.strategy}) + "\n"); fh.flush()
        mem.close()
        for f in work.glob(f"{w}.db*"): f.unlink()
        print(w, flush=True)
