"""Probe: reading on shows only the sentences that go on from a middle-link answer (farther from the question by links)."""
import json, sys
from longrecall.memory.reader import load_reader, SHIPPED
from longrecall.memory.api import build_prompt
from longrecall.memory.walk import walked
from longrecall.memory.onward import core, names as nm
from longrecall.memory.focus import names
from longrecall.rag.multihop import _has_word
from longrecall.niah.scoring import score
rows = [json.loads(l) for l in open(sys.argv[1])]
VARIANT = sys.argv[4] if len(sys.argv) > 4 else "far"
import re
from longrecall.rag.retrievers import STOPWORDS
def words(q): return [w for w in re.findall(r"[a-z0-9][a-z0-9-]*", q.lower()) if w not in STOPWORDS and len(w) > 2]
base = {r["world"]: r for r in map(json.loads, open(sys.argv[3]))}
gen = load_reader(SHIPPED, max_new_tokens=48)
def dist(sents, links, marks):
    low = [s.lower() for s in sents]
    ents = [{e for e in links if _has_word(l, e)} for l in low]
    d = {i: 0 for i, l in enumerate(low) if any(_has_word(l, m.lower()) for m in marks)}
    frontier = list(d)
    while frontier:
        nxt = []
        for i in frontier:
            for j in range(len(sents)):
                if j not in d and ents[i] & ents[j]:
                    d[j] = d[i] + 1; nxt.append(j)
        frontier = nxt
    return d
out = open(sys.argv[2], "w"); tot = 0
for r in rows:
    q = r["sample"]["question"]; sents = r["chunks"]
    links = {e.lower() for t in r["trace"] for e in t.get("via", [])}
    d = dist(sents, links, names(q))
    ans = base[r["world"]]["first"]; first = ans; seen = [core(ans).lower()]; steps = []
    for _ in range(4):
        near = [i for i, s in enumerate(sents) if nm(s, core(ans))]
        if len(near) < 2 or len(near) == len(sents): break
        far = max(d.get(i, -1) for i in near)
        onward = [sents[i] for i in near if d.get(i, -1) == far]
        if len(onward) == len(near): onward = [sents[i] for i in near]
        elif VARIANT == "far2":
            qw = set(words(q)) - {core(ans).lower()}
            cov = lambda ss: max(sum(1 for w in qw if _has_word(x.lower(), w)) for x in ss)
            back = [sents[i] for i in near if sents[i] not in onward]
            if cov(onward) < cov(back): onward = [sents[i] for i in near]
        new = walked(gen(build_prompt(q, "\n\n".join(onward))))[0]
        thing = core(new).lower(); steps.append((onward, new))
        if not thing or thing == seen[-1] or not any(nm(s, thing) for s in sents): break
        if thing in seen: ans = first; break
        ans = new; seen.append(thing)
    s = score(r["sample"], ans or ""); tot += s
    out.write(json.dumps({"world": r["world"], "q": q, "answer": ans, "first": first, "steps": steps, "score": s, "answers": r["sample"]["answers"]}) + "\n"); out.flush()
print(VARIANT, len(rows), tot / len(rows))
