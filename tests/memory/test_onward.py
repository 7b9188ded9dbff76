"""memory.onward: an answer that is a middle link is read again over the sentences naming it; the end of a chain,
an oscillation or an answer outside the evidence stop the reading."""
from longrecall.memory.api import Memory
from longrecall.memory.onward import core, read_on

CHAIN = ["Ivo left the chess set inside locker 7667.", "Locker 7667 stands against the wall of room D624.",
         "The plans show room D624 inside Greyhaven Archive.", "Greyhaven Archive is a landmark of Harrowgate.",
         "Thornbury Station is a landmark of Carrowvale."]


def last_named(question, sentences):
    """A reader that answers with the last thing the last sentence names: right on a neighbourhood, which ends with
    the next link in document order."""
    return "It is " + sentences[-1].rstrip(".").split(" of ")[-1].split(" inside ")[-1].split("room ")[-1] + "."


def test_a_middle_link_is_read_on_to_the_end_of_the_chain():
    asked = []

    def reader(q, near):
        asked.append(list(near))
        return last_named(q, near)

    answer, path = read_on("Ivo wants the chess set back. In what city is it?", CHAIN, "Greyhaven Archive", reader)
    assert answer == "It is Harrowgate." and path == ["It is Harrowgate."]
    assert asked == [CHAIN[2:4]]  # only the neighbourhood of the answer, not the whole evidence


def test_the_end_of_a_chain_costs_no_read():
    def reader(q, near):
        raise AssertionError("an answer named by one sentence is not read again")

    assert read_on("In what city is it?", CHAIN, "It is Harrowgate.", reader) == ("It is Harrowgate.", [])
    assert read_on("In what city is it?", CHAIN, None, reader) == (None, [])
    assert read_on("Which room?", CHAIN[1:3], "room D624", reader) == ("room D624", [])  # every sentence names it: same read


def test_an_oscillation_keeps_the_first_answer_and_a_stranger_stops():
    back = iter(["It is room D624.", "Greyhaven Archive"])  # D624 -> Greyhaven Archive again: back to the first answer
    assert read_on("Which building?", CHAIN, "Greyhaven Archive", lambda q, near: next(back)) == ("Greyhaven Archive", [])
    assert read_on("Which building?", CHAIN, "Greyhaven Archive", lambda q, near: "Port Hollis") == ("Greyhaven Archive", [])
    steady = read_on("Which room?", CHAIN, "locker 7667", lambda q, near: "It is room D624.")
    assert steady == ("It is room D624.", ["It is room D624."])  # D624 read again gives D624: it stays


def test_core_drops_the_answer_lead():
    assert core("It is room L463.") == "room L463" and core("The answer is Northgate Tower.") == "Northgate Tower"
    assert core(None) == "" and core("Harrowgate") == "Harrowgate"


WORDS = "amber birch cedar delta ember fjord grove heron iris juniper kelp lotus maple nectar onyx pine quartz reed sage thyme".split()
BOILER = ("This means someone can hook the library up to any network API they want, synchronous, threaded or asynchronous, "
          "or their own implementation, and start over when a new one comes along, reimplementing the whole protocol "
          "from scratch each time, which is what happens today whenever a new network API appears and someone gets to "
          "redo everything that the previous one already did, again and again, with all the bugs that this brings up. "
          "Nobody wants that, and nobody should have to write the same parser twice over.")


def filler(i: int) -> str:
    return " ".join(f"The {WORDS[(i + j) % 20]} boat left pier {j} on a grey morning while gulls circled the "
                    f"{WORDS[(3 * i + j) % 20]} market." for j in range(40))


def chain_memory(path, generator=None) -> Memory:
    """The chain far apart in one document, and 8 documents holding the same ~500-character passage (one chunk each)."""
    mem = Memory(path, embedder=None, generator=generator)
    for i in range(8):
        mem.add(BOILER + f" Copy {i} of these notes was filed by the archive team on a grey morning while gulls circled "
                "the harbour market and the ferries waited. " + filler(i), source=f"docs-{i}")
    mem.add(" ".join(x for j, s in enumerate(CHAIN[:4]) for x in (s, filler(50 + j))), source="facts")
    return mem


def test_a_repeated_passage_takes_one_place_and_the_named_city_leads_the_chain(tmp_path):
    """The passage shares "someone" and "up" with the question and outranks the city's chunk 8 times over: it no
    longer fills top-k (memory.api.distinct), and the first link read is the sentence naming the question's city,
    not the passage with more question words (rag.multihop.supporting_text's keys). Each mutation fails this."""
    mem = chain_memory(tmp_path / "m.db")
    ctx = mem.ask("Someone's property ended up in the city of Harrowgate. Who does it belong to?", generate=False).context
    assert all(s in ctx for s in CHAIN[:4]) and ctx.count("someone can hook") <= 1, ctx
    mem.close()


def test_ask_reads_on_with_the_reader_and_reports_the_path(tmp_path):
    prompts = []

    def reader(prompt, cap=None):
        prompts.append(prompt)
        return "Greyhaven Archive" if len(prompts) == 1 else "It is Harrowgate."

    mem = chain_memory(tmp_path / "m.db", reader)
    got = mem.ask("Ivo wants the chess set back. In what city is it?")
    assert got.answer == "It is Harrowgate." and got.onward == ["It is Harrowgate."]
    assert "locker 7667" not in prompts[1] and "Greyhaven Archive is a landmark" in prompts[1]
    prompts.clear()
    assert mem.ask("Ivo wants the chess set back. In what city is it?", read_on=False).answer == "Greyhaven Archive"
    assert len(prompts) == 1
    mem.close()
