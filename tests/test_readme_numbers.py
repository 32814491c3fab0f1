"""The numbers README.md quotes from a lesson are the numbers that lesson printed.

A README block that quotes a lesson's full-size run starts with a marker line
``<!-- printed by lessons/NN_name.py: lessons/outputs/NN_name.txt -->``; the output file is that
lesson's stdout from a full-size run (``python lessons/NN_name.py > lessons/outputs/NN_name.txt``).
Every decimal number and every thousands-grouped integer in the rows of the block's table (below its
header) must occur in it.
"""
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MARK = re.compile(r"<!-- printed by (lessons/\S+\.py): (lessons/outputs/\S+\.txt) -->")
NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+|\d{1,3}(?:,\d{3})+)(?![\w])")


def quoted_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = MARK.search(line)
        if not m:
            continue
        body, j = [], i + 1
        while j < len(lines) and not lines[j].startswith("|"):      # the sentence introducing the table
            j += 1
        while j < len(lines) and lines[j].startswith("|"):
            body.append(lines[j])
            j += 1
        blocks.append((m.group(1), m.group(2), body))
    return blocks


def test_readme_marks_its_quoted_lesson_numbers():
    blocks = quoted_blocks()
    assert len(blocks) >= 3, "README should mark the lesson tables it quotes (weight map, pruning, nuclei, ...)"
    for lesson, _, body in blocks:
        assert os.path.exists(os.path.join(ROOT, lesson)), lesson
        assert body, f"the marker for {lesson} is not followed by a table"


@pytest.mark.parametrize("lesson,output,body", quoted_blocks(), ids=[b[0] for b in quoted_blocks()])
def test_readme_numbers_match_the_full_size_output(lesson, output, body):
    path = os.path.join(ROOT, output)
    assert os.path.exists(path), f"{output} missing: run `python {lesson} > {output}` (full size)"
    with open(path, encoding="utf-8") as f:
        printed = f.read()
    assert "[full run:" in printed, f"{output} is not the output of a full-size run"
    tokens = set(NUMBER.findall(printed))
    quoted = [n for row in body[2:] for n in NUMBER.findall(row)]        # below the header and |---|
    assert quoted, f"the README table for {lesson} quotes no numbers"
    missing = [n for n in quoted if n not in tokens]
    assert not missing, f"README quotes {missing} for {lesson}, but its full-size output does not print them"
