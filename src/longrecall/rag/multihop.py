"""Retrieval that follows chains of facts (multi-hop) and retrieval that returns every match (find-all).

Plain top-k fails on related facts because the second fact does not resemble the question (BABILong): here the
entities a retrieved fact points to become the next queries. `rag_answer_context` turns a sample into a short context.

    python -c "from longrecall.rag.multihop import demo; demo()"
"""
from __future__ import annotations

import math
import re
from typing import Callable, Protocol, Sequence

from ..errors import UserError
from .chunking import Chunk, sentence_spans
from .retrievers import STOPWORDS, ChunkIndex, Embedder, fit_budget, make_chunks, terms

Extractor = Callable[[str, str], list[str]]  # (question, supporting facts) -> entities those facts point to
STRATEGIES = ("topk", "multihop", "findall", "auto")

# Words that describe what is asked rather than which item: never a key for find-all.
GENERIC = frozenset(
    "special magic number numbers value values word words uuid uuids key keys variable variables var assigned "
    "hidden passkey pass code codes remember memorize answer question context document".split()
)
# Verbs that open a request ("Go through the text and write down every ...", "List each ..."): a run's leading
# request words are not part of the thing asked for.
REQUEST = frozenset(
    "go give tell find list name write enumerate show return state say report provide identify locate recall search read "
    "extract look collect fetch count gather retrieve note jot spell point".split()
)
_ENTITY = re.compile(
    r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"  # uuids
    r"|[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+"  # hyphenated keys: brave-lion, room_b12
    r"|\b(?=[A-Za-z]*\d)[A-Za-z0-9]{2,}\b"  # numbers and codes: 4417, B12
    r"|\b[A-Z][A-Za-z]+\b"  # names and ALLCAPS variables
)


class Searcher(Protocol):
    """What the strategies need from an index: ChunkIndex (in memory) and memory.api.StoreSearcher provide it."""

    def search(self, query: str, k: int) -> list[Chunk]: ...  # best first, score > 0
    def containing(self, phrase: str, limit: int) -> list[Chunk]: ...  # whole-word, case-insensitive
    def count(self, phrase: str) -> int: ...
    def size(self) -> int: ...  # how many chunks the index holds (the N of an inverse document frequency)


def _has_word(text_lower: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.lower()) + r"(?!\w)", text_lower) is not None


def heuristic_entities(question: str, facts: str) -> list[str]:
    """Names, numbers, codes, uuids and variable names in `facts` that the question does not already mention."""
    q = question.lower()
    out, seen = [], set()
    for m in _ENTITY.finditer(facts):
        e = m.group(0)
        low = e.lower()
        if low in seen or low in STOPWORDS or low in GENERIC or _has_word(q, low):
            continue
        seen.add(low)
        out.append(e)
    return out


def supporting_text(chunks: Sequence[Chunk], anchors: Sequence[str], weights: dict[str, float] | None = None,
                    keys: Sequence[str] = ()) -> str:
    """The sentences that mention the anchors. With weights (hop 0: each question word's inverse document frequency)
    only the best sentences are kept: those naming most of the question's named `keys` (Harrowgate, E885), then those
    whose question words weigh most; the rest of a chunk is noise, or a distractor sharing a common word. Measured at
    1M tokens: ranked by the number of question words hit, a docs sentence holding "someone" and "up" outranked the
    only sentence naming the question's city, and 5 of 50 chain questions lost their first link. Without weights
    (entity hops) every sentence that names an anchor is a fact."""
    scored = []
    for c in chunks:
        for s, e in sentence_spans(c.text):
            sent = c.text[s:e]
            low = sent.lower()
            hit = [a for a in set(anchors) if _has_word(low, a)]
            named = sum(_has_word(low, key) for key in keys)
            scored.append((len(hit), (named, round(sum((weights or {}).get(a, 1.0) for a in hit), 6)), sent))
    best = max((w for n, w, _ in scored if n), default=(0, 0.0))
    keep = [sent for n, w, sent in scored if n > 0 and (weights is None or w == best)]
    return " ".join(dict.fromkeys(keep))


def idf(df: int, total: int) -> float:
    """A word's inverse document frequency (BM25's, kept positive): a word in one chunk of thousands weighs ~8, one in
    every chunk ~0; a word the index lacks weighs as if it were in one chunk."""
    return math.log(1.0 + (total - max(df, 1) + 0.5) / (max(df, 1) + 0.5))


def _add(found: dict, chunks: Sequence[Chunk]) -> list[Chunk]:
    new = [c for c in chunks if c.key not in found]
    for c in new:
        found[c.key] = c
    return new


def multihop_retrieve(
    question: str,
    searcher: Searcher,
    k: int = 4,
    max_hops: int = 4,
    per_entity: int = 2,
    max_entities: int = 6,
    max_df: int = 5,
    extractor: Extractor | None = None,
    trace: list | None = None,
) -> list[Chunk]:
    """Top-k for the question, then repeatedly the chunks containing entities the found facts point to.
    `trace`, when a list, receives one record per hop: {"hop", "via" (the entities followed), "chunks" (their keys)}.

    Returns the best hop-0 chunk, then the chunks each hop reached, then the rest of hop 0: a followed link is
    likelier to matter than a weaker match for the question. Stops when a hop finds no new entity, or after
    max_hops. Entities in more than max_df chunks are skipped: chain links are rare, boilerplate words are not."""
    extract = extractor or heuristic_entities
    found: dict = {}
    hop0 = frontier_chunks = searcher.search(question, k)  # facts are read from all of hop 0...
    _add(found, hop0[:1])  # ...but only its best chunk ranks ahead of the hops
    if trace is not None:
        trace.append({"hop": 0, "via": [], "chunks": [c.key for c in hop0]})
    anchors, asked, known = list(dict.fromkeys(terms(question))), question, set()
    named = key_phrases(question)[0]
    total = max(searcher.size(), 1)
    weights: dict | None = {a: idf(searcher.count(a), total) for a in anchors}
    for _ in range(max_hops):
        facts = supporting_text(frontier_chunks, anchors, weights, keys=named if weights else ())
        entities = [e for e in extract(asked, facts) if e.lower() not in known][: max_entities * 3]
        counts = {e: searcher.count(e) for e in entities}
        # A link is named in two chunks at least (the fact read and the next one); rarer links first.
        entities = sorted((e for e in entities if 2 <= counts[e] <= max_df), key=lambda e: counts[e])[:max_entities]
        if not entities:
            break
        known.update(e.lower() for e in entities)
        asked += " " + " ".join(entities)  # what is already followed counts as asked: no loops
        # The next hop reads every chunk holding these entities, found before or not: a link already retrieved
        # at hop 0 (top-k may catch a middle fact) still has to be read to go on.
        frontier_chunks = [c for e in entities for c in searcher.containing(e, per_entity)]
        _add(found, frontier_chunks)
        if trace is not None:
            trace.append({"hop": len(trace), "via": entities, "chunks": [c.key for c in frontier_chunks]})
        anchors, weights = entities, None
    _add(found, hop0)
    return list(found.values())


def key_phrases(question: str) -> tuple[list[str], list[list[str]]]:
    """(entity-like keys, runs of content words) of a question: find-all tries the first kind first.

    Runs keep descriptive words ("special magic number"): when no key is named, the name of the thing is the key."""
    q = re.sub(r"'s\b", "", question)
    entities, runs, cur = [], [], []
    for pos, tok in enumerate(re.findall(r"[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*|[^\sA-Za-z0-9]", q)):
        low = tok.lower()
        if not tok[0].isalnum() or low in STOPWORDS:
            runs, cur = runs + [cur] if cur else runs, []
            continue
        cur.append(tok)
        named = "-" in tok or "_" in tok or any(ch.isdigit() for ch in tok) or (tok[0].isupper() and pos > 0)
        if named and low not in GENERIC and low not in (e.lower() for e in entities):
            entities.append(tok)
    return entities, runs + [cur] if cur else runs


def _variants(phrase: str) -> list[str]:
    """The phrase and its other number ("magic numbers" <-> "magic number"): questions and needles differ."""
    head, _, last = phrase.rpartition(" ")
    other = last[:-1] if last.endswith("s") and len(last) > 3 else last + "s"
    return [phrase, f"{head} {other}".strip()]


def _best_phrase(runs: list[list[str]], searcher: Searcher) -> list[str]:
    """Variants of the longest sub-phrase of a run that the text contains (rarest among equally long ones). Leading
    request words are dropped first: "Go through" is rarer in a memory than "vault combination", and no key."""
    runs = [r[next((i for i, w in enumerate(r) if w.lower() not in REQUEST), len(r)):] for r in runs]
    subs = {" ".join(r[i:j]) for r in runs for i in range(len(r)) for j in range(i + 1, len(r) + 1)}
    by_len: dict[int, list[tuple[int, str]]] = {}
    for p in subs:
        n = sum(searcher.count(v) for v in _variants(p))
        if n > 0 and not (" " not in p and p.lower() in GENERIC):
            by_len.setdefault(len(p.split()), []).append((n, p))
    if not by_len:
        return []
    return _variants(min(by_len[max(by_len)])[1])


def wants_all(question: str) -> bool:
    return re.search(r"\b(all|every|each|list)\b", question, re.IGNORECASE) is not None


def lists_all(question: str, strategy: str, task: str | None = None) -> bool:
    """Whether the strategy answers this question with find-all (every X), as ranked_for decides it."""
    return strategy == "findall" or (strategy == "auto" and (wants_all(question) or task in ("all_needles", "multivalue", "multiquery")))


def find_all(question: str, searcher: Searcher, keys: Sequence[str] | None = None, max_chunks: int = 64, rel_threshold: float = 0.5) -> list[Chunk]:
    """Every chunk that mentions the question's key (all of them, not a fixed top-k), at most max_chunks.

    Keys: the given ones, else the named keys of the question (brave-lion, 4417, Alice) that the text contains, each
    followed; else the longest run of its words the text contains ("special magic number", either number);
    else every chunk scoring within rel_threshold of the best."""
    ents, runs = (list(keys), []) if keys else key_phrases(question)
    counts = {p: searcher.count(p) for p in ents}
    chosen = sorted((p for p in ents if counts[p] > 0), key=lambda p: counts[p]) or _best_phrase(runs, searcher)
    found: dict = {}
    for p in chosen:
        _add(found, searcher.containing(p, max_chunks - len(found)))
    if not chosen:
        ranked = searcher.search(question, max_chunks)
        best = ranked[0].score if ranked else 0.0
        _add(found, [c for c in ranked if c.score >= rel_threshold * best])
    return list(found.values())


def _merge(*lists: Sequence[Chunk]) -> list[Chunk]:
    found: dict = {}
    for chunks in lists:
        _add(found, chunks)
    return list(found.values())


def ranked_for(question: str, searcher: Searcher, strategy: str = "auto", k: int = 4, task: str | None = None, **kw) -> list[Chunk]:
    """Chunks for a question by strategy, best first. auto: find-all first when the question (or task) asks for all."""
    if strategy == "topk":
        return searcher.search(question, k)
    if strategy == "multihop":
        return multihop_retrieve(question, searcher, k, **kw)
    if strategy == "findall":
        return find_all(question, searcher)
    if strategy == "auto":
        hops = multihop_retrieve(question, searcher, k, **kw)
        return _merge(find_all(question, searcher), hops) if lists_all(question, strategy, task) else hops
    raise UserError(f"unknown retrieval strategy '{strategy}': use one of {', '.join(STRATEGIES)}")


def rag_answer_context(
    sample_dict: dict,
    tokenizer,
    method: str = "auto",
    budget: int = 1024,
    k: int = 4,
    retriever: str = "bm25",
    fill: bool = False,
    chunking: str = "sentences",
    size: int = 1,
    embedder: Embedder | None = None,
) -> str:
    """The retrieved part of sample_dict["context"] (document order, <= budget tokens) to use in its place.

    Chunks are single sentences by default: needles are sentences, and smaller chunks waste less of the budget.
    fill=True tops the budget up with the next best top-k chunks after the strategy's own."""
    context, question = sample_dict["context"], sample_dict["question"]
    index = ChunkIndex(make_chunks(context, tokenizer, chunking, size), retriever, embedder)
    ranked = ranked_for(question, index, method, k, task=sample_dict.get("task"))
    if fill:
        ranked = _merge(ranked, index.search(question, len(index.chunks)))
    return fit_budget(context, ranked, tokenizer, budget)


def demo() -> None:
    text = (
        "The sky is blue. Bob's locker is locker 1203. The grass is green. Alice's locker is locker 4417. "
        "The sun is warm. Locker 1203 is in room A7. Here we go. Locker 4417 is in room B12. There and back again."
    )
    index = ChunkIndex(make_chunks(text, None, "sentences", 1))
    q = "Which room is Alice's locker in?"
    print("top-1   :", [c.text for c in index.search(q, 1)])
    print("multihop:", [c.text for c in multihop_retrieve(q, index, k=1)])
