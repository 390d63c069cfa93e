"""Whatever a pull request puts in a catalogue file, the loader answers with validation problems, never a crash,
and within a time bound (property-based: hypothesis generates the hostile files)."""

from __future__ import annotations

import string
import time
from pathlib import Path

import yaml
from atlas.loader import check_catalog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import NOVEL, write_paper

TIME_BOUND_S = 2.0
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200
    ),  # unicode and control characters
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(string.ascii_letters + "_", max_size=12), inner, max_size=6)
    ),
    max_leaves=40,
)
field_names = st.sampled_from(sorted(yaml.safe_load(NOVEL))) | st.text(
    string.ascii_lowercase + "_", min_size=1, max_size=10
)


def assert_only_problems(root: Path) -> None:
    started = time.perf_counter()
    catalog, problems = check_catalog(root)
    assert time.perf_counter() - started < TIME_BOUND_S
    errors = [p for p in problems if p.severity == "error"]
    if catalog is None:
        assert errors, "no catalogue and no error to say why"
    for problem in errors:
        assert problem.line >= 1 and problem.field and problem.message
    # Good entries are never collateral damage.
    assert not [p for p in errors if p.path.name in ("lora.yaml", "bitfit.yaml")]


@FUZZ
@given(field=field_names, value=values)
def test_any_value_in_any_field_gives_problems_not_crashes(project, field, value):
    document = yaml.safe_load(NOVEL)
    document[field] = value
    write_paper(project, "novel.yaml", yaml.safe_dump(document, allow_unicode=True))
    assert_only_problems(project)


@FUZZ
@given(raw=st.binary(max_size=2_000))
def test_arbitrary_bytes_give_problems_not_crashes(project, raw):
    (project / "catalog" / "papers" / "novel.yaml").write_bytes(raw)
    assert_only_problems(project)


@FUZZ
@given(depth=st.integers(min_value=1, max_value=3_000), flow=st.booleans())
def test_deep_nesting_is_refused_quickly(project, depth, flow):
    nested = "[" * depth + "]" * depth if flow else "".join(f"{'  ' * i}- \n" for i in range(depth))
    write_paper(project, "novel.yaml", NOVEL + "notes: " + nested + "\n")
    assert_only_problems(project)


@FUZZ
@given(copies=st.integers(min_value=2, max_value=9), levels=st.integers(min_value=1, max_value=9))
def test_anchors_and_aliases_cannot_blow_up(project, copies, levels):
    lines = ["a0: &a0 [x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * copies) + "]" for i in range(1, levels + 1)]
    write_paper(project, "novel.yaml", NOVEL + "\n".join(lines) + "\n")
    assert_only_problems(project)


@FUZZ
@given(key=st.sampled_from(["title", "summary", "year", "key"]))
def test_duplicate_keys_in_one_mapping_are_an_error(project, key):
    write_paper(project, "novel.yaml", NOVEL + f"{key}: again\n")
    _, problems = check_catalog(project)
    assert any(p.path.name == "novel.yaml" and "duplicate" in p.message.lower() for p in problems)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from([10_000, 200_000, 2_000_000]))
def test_huge_strings_and_lists_are_handled_within_the_bound(project, size):
    write_paper(
        project,
        "novel.yaml",
        NOVEL + "notes: [" + ", ".join(["x"] * (size // 10)) + "]\n" + "# " + "y" * size + "\n",
    )
    assert_only_problems(project)
