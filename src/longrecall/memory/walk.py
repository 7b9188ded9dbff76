"""A reader's hop-by-hop answer to a chain question, and the hop it reached.

The memory readers are trained to answer a chain link by link ("F376 -> 1015 -> Rosa": the gold answer of a chain
in `longrecall data reader`), so the last hop is the answer. Measured with reader-v2 at 1M tokens
(docs/results/memory): on held-out chains it often walks on past the end or loops back ("3286 -> L463 -> 3286 ->
3459 -> ..."), and an answer that names a wrong locker or room scores 0 even when the right hop is in it. So
`memory ask` keeps the walk as the reasoning it shows and answers with the last hop reached before the walk comes
back to a link it already named (a chain never revisits one). An answer without arrows is left as it is.
"""
from __future__ import annotations

import re

ARROW = re.compile(r"\s*(?:->|→|=>)\s*")


def walked(answer: str | None) -> tuple[str | None, list[str]]:
    """(the answer to give, the hops walked); ([answer], []) when the answer is not a walk."""
    if not answer or not ARROW.search(answer):
        return answer, []
    hops: list[str] = []
    for part in ARROW.split(answer):
        hop = part.strip().strip(".,;").strip()
        if not hop or hop.lower() in (h.lower() for h in hops):
            break  # an empty link, or back to one already named: the reader is looping
        hops.append(hop)
    return (hops[-1] if hops else answer), hops
