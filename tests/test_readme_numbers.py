"""Every measured number in README.md is backed (issue #32): it is listed in `docs/data/readme-numbers.json`
with the committed JSON it comes from (or `"source": null` and why, until that JSON is committed or the
number removed) and its selection mark, and the README carries that mark beside it ("dev-selected" where the
dev set chose anything). A number the README gains without an entry fails here, named with its line.

What counts as measured-looking, in the README's prose, tables and the comments of its code blocks: a
decimal (0.8510), a ratio (19x, 10.73x), a percentage (97%) or a number with a unit of time or size
(2.249 ms, 9.0 min, 690.6 s, 4.1 GiB). Bare integers are not read (counts, issue numbers, dates,
defaults); a few measured counts are registered by hand all the same. The numbers that look measured but
are not (preset weights, option values explained in prose) are in `NOT_MEASURED` below, each with its
reason."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REGISTRY = ROOT / "docs" / "data" / "readme-numbers.json"

# A number (thousands commas allowed) and, optionally, what makes it look measured: %, a ratio's x, a unit.
UNITS = r"ms|s|min|h|GiB|MiB|KiB|GB|MB"
NUMBER = re.compile(
    r"(?<![\w.^/-])"  # not the tail of a word, a path, a version or an exponent (L6, v2, 2^32, 3x384)
    r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?"
    rf"(%|x\b| ?(?:{UNITS})\b)?"
    r"(?![\w.]?\d|e-?\d)"  # not a version (2.13.0), a shape (3x384) or a learning rate (2.5e-5)
)
# Inline code is a command, an option value, a path or a version pin (`--epochs 3`, `torch==2.13.0`).
INLINE_CODE = re.compile(r"`[^`]+`")
FENCE = re.compile(r"^```(\w*)\s*$")
COMMENT = re.compile(r"(?:^|\s)#")
# A value given to an option in prose (--max-drop 0.01, --val-split=0.1) is a setting, not a result.
OPTION_BEFORE = re.compile(r"--[\w-]+[ =]$")

# (a unique piece of the README, the number in it, why it is not a measurement)
NOT_MEASURED = [
    ("(10%, seeded", "10%", "the default size of a carved dev split, a setting"),
    ("0.9 soft (KL", "0.9", "the kd preset's weight of the soft term, a setting"),
    ("+ 0.1 hard |", "0.1", "the kd preset's weight of the hard term, a setting"),
    ("soft + 0.1 hard + hidden", "0.1", "the multilevel preset's weight of the hard term, a setting"),
    ("paired-bootstrap 95% interval", "95%", "the level of the interval, chosen"),
    ("FFN 4x or 2x the width", "4x", "candidate FFN sizes of the compress plan, a setting"),
    ("FFN 4x or 2x the width", "2x", "candidate FFN sizes of the compress plan, a setting"),
    ("= 3% of the teacher's held-out score", "3%", "explains the option value `--max-drop-percent 3`"),
    ("about 3x the model)", "3x", "what a resume checkpoint holds (AdamW's two moments and the model)"),
    ("one line every 30 s", "30 s", "the default progress interval, a setting"),
    ("(4x the rows) and", "4x", "compress's mixed transfer set (compress_stages.TRANSFER), a setting"),
    ("from the corpus (3x)", "3x", "compress's mixed transfer set (compress_stages.TRANSFER), a setting"),
    ("each at 0.6x, then", "0.6x", "compress's transfer rounds (compress_stages.TRANSFER), a setting"),
    ("then 0.4x, the rate", "0.4x", "compress's transfer rounds (compress_stages.TRANSFER), a setting"),
    ("the rows, 6x copies", "6x", "compress's transfer rounds (compress_stages.TRANSFER), a setting"),
    ("4x fresh ones (the next seed)", "4x", "compress's transfer rounds (compress_stages.TRANSFER), a setting"),
    ("under the 97% the issue asks", "97%", "issue #30's quality threshold, quoted"),
    ("25% (one shape", "25%", "issue #30's threshold for the planner's error, quoted"),
    ("within 25% of the verdict", "25%", "issue #30's threshold for the planner's error, quoted"),
]


def _registry() -> dict:
    return json.loads(REGISTRY.read_text())


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def _masked(text: str) -> str:
    """The README with what is not prose blanked out, offsets kept: inline code, and in a fenced block with a
    language (or an indented block) everything but comments. A fence without a language is a text listing
    (the source tree), read as prose."""
    out, fence = [], None
    for line in text.splitlines(keepends=True):
        match = FENCE.match(line)
        if match:
            fence = None if fence is not None else match.group(1)
            out.append(_blank(line))
            continue
        if fence or (fence is None and line.startswith("    ")):
            comment = COMMENT.search(line)
            cut = comment.start() if comment else len(line.rstrip("\n"))
            line = " " * cut + line[cut:]
        out.append(line)
    return INLINE_CODE.sub(lambda m: _blank(m.group(0)), "".join(out))


def measured_looking(text: str) -> list[tuple[int, str]]:
    """(offset, number as printed) of every measured-looking number outside code."""
    found, masked = [], _masked(text)
    for match in NUMBER.finditer(masked):
        looks_measured = match.group(2) or match.group(3)  # a decimal point, or %, x or a unit
        if looks_measured and not OPTION_BEFORE.search(masked, max(0, match.start() - 40), match.start()):
            found.append((match.start(), text[match.start() : match.end()]))
    return found


def _only_span(text: str, context: str) -> tuple[int, int] | None:
    """Where `context` occurs in the README, when it occurs exactly once."""
    start = text.find(context)
    if start < 0 or text.find(context, start + 1) >= 0:
        return None
    return start, start + len(context)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def test_every_measured_looking_number_is_registered_or_explained():
    """A number the README gains must come with its source and selection (or a reason it is not measured),
    so a claim cannot enter the front page without the data behind it."""
    text = README.read_text()
    covered = []  # (start, end, number) of each registered or explained occurrence
    entries = [(e["context"], e["text"]) for e in _registry()["numbers"]]
    for context, number in entries + [(c, n) for c, n, _ in NOT_MEASURED]:
        span = _only_span(text, context)
        if span:
            covered.append((span[0], span[1], number))
    missing = [
        f"README.md:{_line(text, offset)}: {number!r}"
        for offset, number in measured_looking(text)
        if not any(start <= offset < end and number == got for start, end, got in covered)
    ]
    assert not missing, (
        "measured-looking numbers in README.md with no entry in docs/data/readme-numbers.json (its source JSON "
        "and selection mark) and not in NOT_MEASURED:\n" + "\n".join(missing)
    )


def test_each_context_is_in_the_readme_once_and_holds_its_number():
    """Each entry points at exactly one place in the README, so an entry left behind by an edit fails here
    rather than silently covering another number."""
    text = README.read_text()
    entries = [(e["context"], e["text"]) for e in _registry()["numbers"]]
    bad = [
        f"{number!r} in {context!r}"
        for context, number in entries + [(c, n) for c, n, _ in NOT_MEASURED]
        if _only_span(text, context) is None or number not in context
    ]
    assert not bad, "contexts not found exactly once in README.md, or without their number:\n" + "\n".join(bad)


def _tracked() -> set[str]:
    out = subprocess.run(["git", "ls-files", "docs"], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _at(data, key: str):
    """The value at a dotted path such as `tasks.STS-B[8].speedup_torch`; a dict key may itself hold dots
    (`student 3x384`, `runs/pairs/wiki-50k.tsv`): the longest key that fits is taken."""
    while key:
        if key.startswith("["):
            end = key.index("]")
            data, key = data[int(key[1:end])], key[end + 1 :].lstrip(".")
            continue
        fits = [k for k in data if key == k or key.startswith((k + ".", k + "["))]
        if not fits:
            raise KeyError(key)
        name = max(fits, key=len)
        data, key = data[name], key[len(name) :].lstrip(".")
    return data


def _printed(number: str) -> tuple[str, int]:
    """The digits of a printed number without its %, x or unit, and its decimals."""
    digits = re.match(r"[\d,]+(?:\.\d+)?", number).group(0).replace(",", "")
    return digits, len(digits.partition(".")[2])


def _source_problem(entry: dict, tracked: set[str]) -> str | None:
    """What is wrong with an entry's source, or None. A null source needs a reason; a source must be a JSON
    file tracked by git; a key must lead to a value that, scaled and rounded as printed, is the number."""
    source, key = entry.get("source"), entry.get("key")
    if source is None:
        return None if entry.get("why") else "no source and no why"
    if source not in tracked:
        return f"{source} is not tracked by git"
    if key is None:
        return None if entry.get("derived") else "no key and no derived note"
    try:
        value = _at(json.loads((ROOT / source).read_text()), key)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        return f"{source}: no {key} ({err!r})"
    digits, decimals = _printed(entry["text"])
    shown = f"{float(value) * entry.get('scale', 1):.{decimals}f}"
    return None if shown == digits else f"{source} {key} = {value!r}, printed as {shown}, not {digits}"


def test_each_registered_number_has_its_source():
    """The committed JSON behind each number holds it, as printed: a stale README number or a wrong key fails."""
    tracked = _tracked()
    bad = []
    for entry in _registry()["numbers"]:
        problem = _source_problem(entry, tracked)
        if problem:
            bad.append(f"{entry['text']!r} ({entry['context']!r}): {problem}")
    assert not bad, "\n".join(bad)


def _paragraph(text: str, offset: int) -> str:
    """The lines between the blank lines around `offset` (a paragraph, a table, a code block); a table's
    includes the paragraph just before it, which introduces the table and says how its rows were chosen."""
    start = text.rfind("\n\n", 0, offset) + 1
    if text.startswith("|", start + 1):
        start = text.rfind("\n\n", 0, start - 1) + 1
    end = text.find("\n\n", offset)
    return text[start : end if end >= 0 else len(text)]


def test_each_number_carries_its_selection_mark():
    """A number picked with the dev set ("dev-selected") or on held-out rows says so in its own paragraph, in
    one of the wordings the registry's `marks` agrees for that selection."""
    text, registry = README.read_text(), _registry()
    marks, bad = registry["marks"], []
    for entry in registry["numbers"]:
        selection = entry["selection"]
        assert selection in registry["selections"], f"{entry['text']!r}: unknown selection {selection!r}"
        span = _only_span(text, entry["context"])
        if selection not in marks or span is None:
            continue
        paragraph = _paragraph(text, span[0])
        if not any(mark in paragraph for mark in marks[selection]):
            bad.append(f"README.md:{_line(text, span[0])}: {entry['text']!r} is {selection}, unmarked")
    assert not bad, f"numbers without their selection mark (one of {marks}):\n" + "\n".join(bad)
