"""`atlas import-awesome`: parse the upstream list, match the catalogue, scaffold only new papers."""

from __future__ import annotations

from pathlib import Path

from atlas.cli import main
from atlas.importer import import_awesome, parse_awesome
from atlas.loader import check_catalog, load_catalog

from .conftest import UPSTREAM_LIST, snapshot

LISTED = parse_awesome(UPSTREAM_LIST.read_text(encoding="utf-8"))


def test_the_upstream_list_yields_75_items_with_their_context() -> None:
    assert len(LISTED) == 75
    assert len({item.title for item in LISTED}) == 75
    bitfit = LISTED[1]
    assert (bitfit.category, bitfit.foundation_model, bitfit.subheading, bitfit.position) == (
        "Selective PEFT",
        "LLM",
        "Specific Selection",
        2,
    )
    assert bitfit.title.startswith("BitFit: Simple Parameter-efficient")
    assert bitfit.venue_and_year == ("ACL", 2022)
    assert bitfit.authors == ("Elad Ben-Zaken", "Shauli Ravfogel", "Yoav Goldberg")
    assert bitfit.code_url == "https://github.com/benzakenelad/BitFit"


def test_irregular_items_are_read_too() -> None:
    by_title = {item.title.split(":")[0]: item for item in LISTED}
    assert by_title["MAD-X"].venue_and_year == (
        "Intelligent Systems In Accounting, Finance &Management",
        2020,
    )
    assert by_title["AdaMix"].venue_and_year == ("EMNLP", 2022)  # "**Title**.**Venue**" without a space
    assert by_title[
        "Masking As an Efficient Alternative to Finetuning for Pretrained Language Models"
    ].venue_and_year == (
        "EMNLP",
        2020,
    )  # "**EMNLP 2020.**"
    assert (
        by_title["Masking As an Efficient Alternative to Finetuning for Pretrained Language Models"].code_url
        is None
    )
    assert (
        by_title["A Stronger Mixture of Low-Rank Experts for Fine-Tuning Foundation Models"].arxiv
        == "2502.15828"
    )
    assert by_title["LoRA"].subheading is None and by_title["LoRA"].category == "Reparameterization PEFT"


def test_a_dry_run_lists_new_and_differing_papers_and_writes_nothing(project: Path, capsys) -> None:
    before = snapshot(project)
    assert main(["import-awesome", str(UPSTREAM_LIST), "--root", str(project)]) == 0
    assert snapshot(project) == before
    out = capsys.readouterr().out
    assert "75 listed: 2 in the catalogue (2 with differences), 73 new; dry run, nothing written" in out
    assert "differs: line 488: lora: venue: list 'CoRR 2022', catalogue 'ICLR 2022'" in out
    assert (
        "new: line 48: 'Revealing the Dark Secrets of BERT' -> catalog/papers/revealing-dark-secrets-bert.yaml"
        in out
    )


def test_write_scaffolds_new_papers_only_and_never_overwrites(project: Path) -> None:
    lora_before = (project / "catalog/papers/lora.yaml").read_bytes()
    report = import_awesome(load_catalog(project), UPSTREAM_LIST.read_text(encoding="utf-8"), write=True)
    assert len(report.new) == 73 and all(new.path and new.path.exists() for new in report.new)
    assert (project / "catalog/papers/lora.yaml").read_bytes() == lora_before
    assert len(list((project / "catalog/papers").glob("*.yaml"))) == 75


def test_scaffolds_cannot_pass_validation_until_every_todo_is_filled(project: Path) -> None:
    import_awesome(load_catalog(project), UPSTREAM_LIST.read_text(encoding="utf-8"), write=True)
    catalog, problems = check_catalog(project)
    assert catalog is None
    scaffolds = {p.path for p in problems}
    assert len(scaffolds) == 73
    for problem in problems:  # every error points at a line still holding the placeholder
        line = (project / problem.path).read_text(encoding="utf-8").splitlines()[problem.line - 1]
        assert "TODO" in line, str(problem)


def test_a_scaffold_carries_what_the_list_says(project: Path) -> None:
    import_awesome(load_catalog(project), UPSTREAM_LIST.read_text(encoding="utf-8"), write=True)
    text = (project / "catalog/papers/parameter-efficient-transfer-learning-nlp.yaml").read_text(
        encoding="utf-8"
    )
    assert "title: Parameter-Efficient Transfer Learning for NLP\n" in text
    assert "- Neil Houlsby\n" in text and "year: 2019\n" in text
    assert "code: https://github.com/google-research/adapter-bert\n" in text
    assert (
        "upstream:\n  category: Addictive PEFT\n  foundation_model: LLM\n  subheading: Adapter\n  position: 1\n"
        in text
    )
