import itertools

from ingest.chunking import chunk
from ingest.parsers import join_pages
from ingest.parsers.text import parse_text

CONTRACT = """MASTER SERVICES AGREEMENT

1. Definitions
"Services" means the services described in each Statement of Work. "Fees" means the amounts payable.

2. Term
This Agreement begins on the Effective Date and continues for three (3) years. It renews for successive one-year terms unless either party gives notice.

12. Termination
12.2 Notice. Either party may terminate this Agreement on ninety (90) days written notice to the other party. Termination does not affect accrued rights.
"""


def test_chunks_are_exact_slices_of_the_document_text():
    parsed = parse_text(CONTRACT.encode())
    drafts = chunk(parsed, size=120, overlap=40)
    assert len(drafts) > 3
    for d in drafts:
        assert parsed.text[d.start : d.end] == d.text
        assert d.text == d.text.strip()


def test_chunks_respect_the_size_limit_and_cover_every_word():
    parsed = parse_text(CONTRACT.encode())
    drafts = chunk(parsed, size=120, overlap=0)
    assert all(len(d.text) <= 120 for d in drafts)
    covered = set()
    for d in drafts:
        covered.update(range(d.start, d.end))
    for index, char in enumerate(parsed.text):
        if not char.isspace():
            assert index in covered, f"character {index} ({char!r}) is in no chunk"


def test_overlap_repeats_whole_sentences_between_neighbours():
    text = " ".join(f"Sentence number {i} says something about clause {i}." for i in range(40))
    parsed = parse_text(text.encode())
    drafts = chunk(parsed, size=300, overlap=120)
    assert len(drafts) >= 5
    for a, b in itertools.pairwise(drafts):
        assert b.start < a.end, "neighbouring chunks should overlap"
        assert b.start > a.start


def test_pages_and_offsets_follow_the_page_ranges():
    parsed = join_pages(["First page text. " * 5, "Second page: the fee is 30 percent.", ""])
    drafts = chunk(parsed, size=1000, overlap=100)
    assert [d.page for d in drafts] == [1, 2]
    assert "30 percent" in drafts[1].text
    assert parsed.text[drafts[1].start : drafts[1].end] == drafts[1].text


def test_heading_of_each_chunk_is_the_nearest_section_heading():
    parsed = parse_text(CONTRACT.encode())
    drafts = chunk(parsed, size=160, overlap=0)
    notice = next(d for d in drafts if "ninety (90) days" in d.text)
    assert notice.heading.startswith("12")
    term = next(d for d in drafts if "three (3) years" in d.text)
    assert term.heading == "2. Term"


def test_a_single_unbroken_run_longer_than_the_size_is_cut():
    parsed = parse_text(("x" * 2500).encode())
    drafts = chunk(parsed, size=1000, overlap=0)
    assert [len(d.text) for d in drafts] == [1000, 1000, 500]
