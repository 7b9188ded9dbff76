"""Probe: cut a chain's evidence to one linked path of sentences, read it with reader-v1 (+ read on)."""
import json, sys
from longrecall.memory.reader import load_reader, SHIPPED
from longrecall.memory.api import build_prompt
from longrecall.memory.walk import walked
from longrecall.memory.onward import read_on
from longrecall.memory.focus import names
from longrecall.rag.multihop import _has_word
from longrecall.rag.retrievers import STOPWORDS
from longrecall.niah.scoring import score
import re
rows = [json.loads(l) for l in open(sys.argv[1])]
variant = sys.argv[3]
gen = load_reader(SHIPPED, max_new_tokens=48)

def words(q): return [w for w in re.findall(r"[a-z0-9][a-z0-9-]*", q.lower()) if w not in STOPWORDS and len(w) > 2]

def best_path(q, sents, links, marks):
    low = [s.lower() for s in sents]
    ents = [{e for e in links if _has_word(l, e)} for l in low]
    starts = [i for i, l in enumerate(low) if any(_has_word(l, m.lower()) for m in marks)]
    qw = set(words(q)) | {m.lower() for m in marks}
    found = []
    def dfs(path, used):
        ext = False
        for e in ents[path[-1]] - used:
            for j in range(len(sents)):
                if j not in path and e in ents[j]:
                    ext = True; dfs(path + [j], used | {e})
        if not ext: found.append(path)
    for s in starts: dfs([s], {m.lower() for m in marks})
    if not found: return None
    def cov(p): return sum(1 for w in qw if any(_has_word(low[i], w) for i in p))
    return max(found, key=lambda p: (cov(p), -len(p)))

out = open(sys.argv[2], "w"); tot = 0
for r in rows:
    q = r["sample"]["question"]; sents = r["chunks"]
    links = {e.lower() for t in r["trace"] for e in t.get("via", [])}
    marks = names(q)
    p = best_path(q, sents, links, marks) if variant != "base" else None
    ev = [sents[i] for i in p] if p else sents
    ans, _ = walked(gen(build_prompt(q, "\n\n".join(ev)))) if ev else ("", None)
    ans2, on = read_on(q, ev, ans, lambda qq, near: walked(gen(build_prompt(qq, "\n\n".join(near))))[0])
    s = score(r["sample"], ans2 or "")
    tot += s
    complete = all(any(t == x for x in ev) for t in r["targets"])
    out.write(json.dumps({"world": r["world"], "q": q, "ev": ev, "answer": ans2, "first": ans, "onward": on, "score": s, "complete": complete, "answers": r["sample"]["answers"]}) + "\n"); out.flush()
print(variant, len(rows), tot / len(rows))
