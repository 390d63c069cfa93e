"""Write refimpl/tasks/data/sentiment.csv: short product and movie statements labelled positive or negative.

    python -m refimpl.tasks.make_text_dataset      # rewrites the shipped file; same bytes on every run

Every sentence comes from the hand-written templates and word lists below, drawn with a fixed seed, so the file
is reproducible and free of third-party text (CC0, see refimpl/tasks/README.md). The label follows rules a bag of
words cannot read off: negation flips a clause ("is not reliable"), and in a contrast ("X, but Y", "although X, Y",
"Y, even though X") the main clause Y decides while X carries the opposite cue.
"""

from __future__ import annotations

import csv
import io
import os
import random
import tempfile
from pathlib import Path

DATA_FILE = Path(__file__).parent / "data" / "sentiment.csv"
SEED = 2501
TRAIN_PER_LABEL, TEST_PER_LABEL = 600, 200  # 1,600 sentences in all, balanced in both splits
LABELS = ("negative", "positive")

SUBJECTS = {
    "product": (
        "the battery",
        "the screen",
        "this blender",
        "the headphones",
        "the charger",
        "this backpack",
        "the keyboard",
        "the camera",
        "this kettle",
        "the delivery",
        "the manual",
        "this vacuum",
    ),
    "movie": (
        "the plot",
        "the acting",
        "this film",
        "the soundtrack",
        "the ending",
        "the dialogue",
        "the cast",
        "this sequel",
        "the script",
        "the pacing",
        "the villain",
        "the cinematography",
    ),
}
ADJECTIVES = {  # polarity 1 = positive, 0 = negative
    "product": {
        1: ("reliable", "sturdy", "great", "excellent", "handy", "solid", "quiet", "worth the money"),
        0: ("flimsy", "useless", "awful", "noisy", "broken", "cheap", "disappointing", "a waste of money"),
    },
    "movie": {
        1: ("gripping", "moving", "brilliant", "clever", "wonderful", "funny", "beautiful", "a delight"),
        0: ("boring", "clumsy", "awful", "predictable", "dull", "silly", "forgettable", "a mess"),
    },
}
VERBS = {
    1: ("i love", "i really enjoyed", "i would recommend", "we liked"),
    0: ("i hate", "i regret", "we disliked"),
}
INTENSIFIERS = ("", "", "really ", "quite ", "very ", "truly ")
CONTRASTS = ("{x}, but {y}", "although {x}, {y}", "{y}, even though {x}", "{x}; however, {y}")


def clause(rng: random.Random, domain: str, polarity: int) -> str:
    """One clause with the given polarity; negated clauses use an adjective of the opposite polarity."""
    subject = rng.choice(SUBJECTS[domain])
    form = rng.randrange(4)
    if form == 0:
        adjective = rng.choice(ADJECTIVES[domain][polarity])
        intensifier = "" if " " in adjective else rng.choice(INTENSIFIERS)  # not "very a waste of money"
        return f"{subject} {rng.choice(('is', 'was'))} {intensifier}{adjective}"
    if form == 1:
        adjective = rng.choice(ADJECTIVES[domain][1 - polarity])
        negation = rng.choice(("is not", "was not", "is never", "is hardly", "is far from"))
        return f"{subject} {negation} {adjective}"
    if form == 2:
        return f"{rng.choice(VERBS[polarity])} {subject}"
    return f"i did not {rng.choice(('like', 'enjoy')) if polarity == 0 else 'hate'} {subject}"


def sentence(rng: random.Random, domain: str, polarity: int) -> str:
    shape = rng.randrange(3)
    if shape == 0:
        return clause(rng, domain, polarity)
    if shape == 1:  # a mixed cue: the subordinate clause says the opposite of the main one
        template = rng.choice(CONTRASTS)
        return template.format(x=clause(rng, domain, 1 - polarity), y=clause(rng, domain, polarity))
    return f"{clause(rng, domain, polarity)} and {clause(rng, domain, polarity)}"


def generate() -> list[dict[str, str]]:
    """Unique sentences, balanced over labels and split into disjoint train and test rows."""
    rng = random.Random(SEED)
    per_label = TRAIN_PER_LABEL + TEST_PER_LABEL
    seen: set[str] = set()
    pools: dict[int, list[tuple[str, str]]] = {0: [], 1: []}
    while min(len(pool) for pool in pools.values()) < per_label:
        polarity, domain = rng.randrange(2), rng.choice(tuple(SUBJECTS))
        text = sentence(rng, domain, polarity)
        if text not in seen and len(pools[polarity]) < per_label:
            seen.add(text)
            pools[polarity].append((domain, text))
    rows = []
    for polarity, pool in pools.items():
        for index, (domain, text) in enumerate(pool):
            split = "train" if index < TRAIN_PER_LABEL else "test"
            rows.append({"split": split, "domain": domain, "label": LABELS[polarity], "text": text})
    rng.shuffle(rows)
    return rows


def write(rows: list[dict[str, str]], path: Path = DATA_FILE) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("split", "domain", "label", "text"), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as handle:
        handle.write(buffer.getvalue())
    os.replace(handle.name, path)


if __name__ == "__main__":
    write(generate())
    print(f"wrote {DATA_FILE}")
