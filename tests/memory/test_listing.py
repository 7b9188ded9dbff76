"""Every-X questions are read a few evidence sentences at a time and the answers merged into one list."""
from __future__ import annotations

import re

from longrecall.memory.api import Memory
from longrecall.memory.listing import abstains, items, merge, read_in_pieces
from longrecall.rag.chunking import Chunk

JUNK = "The fastapi dev server reloads on change. Port 8000 is already occupied. Use a clean virtual environment."
CODES = ["4417", "9021", "3388", "7150", "6604", "2279", "8812", "5093", "1346"]


def first_code_reader(prompt: str, cap: int | None = None) -> str:
    """Like a small reader asked to list many values: it gives the first it sees and stops."""
    notes = prompt.split("Question:")[0]
    found = re.findall(r"\b\d{4}\b", notes)
    return f"It is {found[0]}." if found else "The notes do not say."


def test_items_split_lists_and_drop_bullets_and_openers():
    assert items("It is 4417, 9021 and 3388.") == ["4417", "9021", "3388"]
    assert items("1. 4417\n2. 9021") == ["4417", "9021"]
    assert merge(["4417, 9021", "9021; 3388", "The notes do not say."]) == "4417, 9021, 3388"
    assert merge(["It is not in the notes."]) == ""
    assert abstains("The notes do not mention Kofi.") and not abstains("4417")


def test_pieces_are_read_in_order_with_a_token_cap_and_abstentions_dropped():
    chunks = [Chunk(text=t, start=i * 50, end=i * 50 + len(t), index=i, doc_id=1)
              for i, t in enumerate([f"The vault code is {c}." for c in CODES[:5]] + ["Nothing here."])]
    caps, prompts = [], []

    def reader(prompt, cap=None):
        caps.append(cap)
        prompts.append(prompt)
        return first_code_reader(prompt)

    answer = read_in_pieces("List every vault code.", chunks, reader, lambda q, part: " ".join(c.text for c in part) + f" Question: {q}", 2)
    assert answer == "4417, 3388, 6604"  # one value per piece of two: pieces are read, not sentences
    assert len(prompts) == 3 and all(c is not None and c <= 2 * 16 + 8 for c in caps)
    one_each = read_in_pieces("List every vault code.", chunks, reader, lambda q, part: " ".join(c.text for c in part) + f" Question: {q}", 1)
    assert one_each == ", ".join(CODES[:5])
    only_junk = read_in_pieces("List every vault code.", chunks[5:], reader, lambda q, part: part[0].text, 1)
    assert only_junk == "The notes do not say."  # nothing found: the reader's own abstention, not an empty answer


def test_memory_ask_reads_an_every_x_question_in_pieces(tmp_path):
    doc = " ".join(part for c in CODES for part in (JUNK, f"Remember that the vault code is {c}."))
    mem = Memory(tmp_path / "m.db", embedder=None, generator=first_code_reader)
    mem.add(doc, source="notes")
    q = "List every vault code in the notes."
    assert mem.ask(q, read_group=1).answer == ", ".join(CODES)
    assert mem.ask(q, read_group=None).answer == "It is 4417."  # all at once: the early stop this module exists for
    single = mem.ask("What is the vault code?", read_group=1)  # not an every-X question: one read
    assert single.answer.startswith("It is ")
    mem.close()


def test_a_generator_that_batches_gets_the_pieces_sixteen_at_a_time():
    chunks = [Chunk(text=f"The vault code is {1000 + i}.", start=i * 40, end=i * 40 + 26, index=i, doc_id=1) for i in range(20)]
    batches = []

    def reader(prompt, cap=None):
        raise AssertionError("the batch path is used when offered")

    reader.many = lambda prompts, cap=None: batches.append(len(prompts)) or [first_code_reader(p) for p in prompts]
    answer = read_in_pieces("List every vault code.", chunks, reader, lambda q, part: " ".join(c.text for c in part) + f" Question: {q}", 1)
    assert batches == [16, 4] and answer == ", ".join(str(1000 + i) for i in range(20))
