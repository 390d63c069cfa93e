"""The generated README: grouped, numbered, escaped, deterministic, and checked for staleness."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import markdown
from atlas.cli import main
from atlas.loader import load_catalog
from atlas.project import SITE_URL
from atlas.readme import render_readme

from .conftest import NOVEL, PROJECT_ROOT, write_paper

HOSTILE_TITLE = "<script>alert(1)</script> *Bold* [link](https://evil.example) `code` A_B & C | D"


def test_entries_are_grouped_by_category_then_fm_then_subcategory(project: Path) -> None:
    write_paper(project, "novel.yaml", NOVEL.replace("[LLM]", "[LLM, VLM]"))
    text = render_readme(load_catalog(project))
    headings = re.findall(r"^(#{2,4} .+)$", text.split("## Counts")[1], flags=re.MULTILINE)
    assert headings == [
        "## Selective PEFT",
        "### Large Language Model \\(LLM\\)",
        "#### Specific Selection",
        "### Vision-Language Model \\(VLM\\)",
        "#### Specific Selection",
        "## Reparameterization PEFT",
        "### Large Language Model \\(LLM\\)",
        "#### Low-Rank Decomposition",
    ]
    selective = text.split("\n## Selective PEFT")[1].split("## Reparameterization PEFT")[0]
    llm, vlm = selective.split("### Vision-Language Model")
    assert "1. **BitFit: Simple" in llm and "2. **A Novel Method Used Only in Tests**. ICLR 2023." in llm
    assert "1. **A Novel Method Used Only in Tests**. ICLR 2023." in vlm


def test_entries_show_venue_year_authors_and_links(project: Path) -> None:
    (project / "refimpl/selective").mkdir(parents=True)
    (project / "refimpl/selective/bitfit.py").write_text("")
    text = render_readme(load_catalog(project))
    assert "*Edward J. Hu, Yelong Shen, et al.*" in text  # authors_complete: false
    assert "*Elad Ben Zaken, Shauli Ravfogel, Yoav Goldberg*" in text
    assert (
        "[[arXiv]](https://arxiv.org/abs/2106.10199) [[code]](https://github.com/benzakenelad/BitFit) "
        "[[reference implementation]](refimpl/selective/bitfit.py)"
    ) in text
    assert f"[[reference implementation]]({SITE_URL}methods/lora/)" in text  # no source file in this project


def test_counts_table_and_legend(project: Path) -> None:
    text = render_readme(load_catalog(project))
    assert "| Category | LLM | VLM | Papers |" in text
    assert "| Selective PEFT | 1 | 0 | 1 |" in text
    assert "| All | 2 | 0 | 2 |" in text
    assert "- ![VLM](https://img.shields.io/badge/VLM-ca8a04) **Vision-Language Model**:" in text
    assert "- [Reparameterization PEFT](#reparameterization-peft) (1)" in text


def test_catalogue_text_is_shown_literally(project: Path) -> None:
    write_paper(
        project,
        "novel.yaml",
        NOVEL.replace("title: A Novel Method Used Only in Tests", f"title: '{HOSTILE_TITLE}'"),
    )
    html = markdown.markdown(render_readme(load_catalog(project)))
    assert "<script>" not in html and 'href="https://evil.example"' not in html
    titles = [unescape(title) for title in re.findall(r"<strong>(.*?)</strong>", html)]
    assert HOSTILE_TITLE in titles


def test_output_is_deterministic(project: Path) -> None:
    write_paper(project, "novel.yaml", NOVEL)
    assert render_readme(load_catalog(project)) == render_readme(load_catalog(project))


def test_header_states_the_one_setup_command_and_the_main_jobs(project: Path) -> None:
    text = render_readme(load_catalog(project))
    setup = 'python -m venv .venv && . .venv/bin/activate\npip install -e ".[dev]"\n'
    assert f"```sh\n{setup}```" in text
    assert "```sh\nmkdocs serve\n```" in text and "http://127.0.0.1:8000" in text
    assert "```sh\npytest\n```" in text
    assert "https://arxiv.org/abs/2501.13787" in text and "[CONTRIBUTING.md](CONTRIBUTING.md)" in text
    ci = (PROJECT_ROOT / ".ci/run").read_text()
    assert 'pip install -q -e ".[dev]"' in ci and "\npytest\n" in ci  # CI runs what the README says


def test_readme_check_fails_when_stale_and_passes_after_regenerating(project: Path, capsys) -> None:
    assert main(["readme", "--root", str(project)]) == 0
    assert main(["readme", "--check", "--root", str(project)]) == 0
    write_paper(project, "novel.yaml", NOVEL)
    capsys.readouterr()
    assert main(["readme", "--check", "--root", str(project)]) == 1
    err = capsys.readouterr().err
    assert "README.md is stale" in err and "\n+" in err
    assert main(["readme", "--root", str(project)]) == 0
    assert main(["readme", "--check", "--root", str(project)]) == 0


def test_a_paper_link_that_is_the_arxiv_page_is_shown_once(project: Path) -> None:
    arxiv_page = "https://arxiv.org/abs/2301.00001"
    write_paper(project, "novel.yaml", NOVEL.replace("links:\n", f"links:\n  paper: {arxiv_page}\n"))
    text = render_readme(load_catalog(project))
    assert f"[[arXiv]]({arxiv_page}) [[code]](https://example.org/code)" in text
    assert text.count(arxiv_page) == 1
