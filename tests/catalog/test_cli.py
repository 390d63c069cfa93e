"""The `atlas` command line: exit codes, one-line errors, --root, and what each command writes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from atlas.cli import build_parser, main
from atlas.schemafiles import SCHEMA_DIR

from .conftest import NOVEL, snapshot, write_paper


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", ["validate", "readme", "export", "schema", "new", "import-awesome"])
def test_every_command_has_help_and_a_root_option(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    assert "--root DIR" in capsys.readouterr().out.replace("--root ROOT", "--root DIR")


def test_validate_prints_every_problem_and_writes_nothing(project: Path, capsys) -> None:
    assert run(capsys, "validate", "--root", str(project))[:2] == (
        0,
        "ok: 2 papers, 0 errors, 0 warning(s)\n",
    )
    write_paper(project, "novel.yaml", NOVEL.replace("year: 2023", "year: 1800").replace("[LLM]", "[XFM]"))
    before = snapshot(project)
    code, _, err = run(capsys, "validate", "--root", str(project))
    assert code == 1
    assert err.splitlines() == [
        f"catalog/papers/novel.yaml:5: year: must be between 1990 and {dt.date.today().year + 1}",
        "catalog/papers/novel.yaml:8: foundation_models[0]: unknown FM type 'XFM' (LLM, VLM)",
        "2 error(s) in 1 file(s), 0 warning(s)",
    ]
    assert snapshot(project) == before


def test_warnings_are_marked_and_do_not_fail(project: Path, capsys) -> None:
    write_paper(project, "novel.yaml", NOVEL.replace("method: bitfit", "method: vpt"))
    code, out, err = run(capsys, "validate", "--root", str(project))
    assert code == 0 and "1 warning(s)" in out
    assert err.strip().endswith("planned method 'vpt': refimpl does not implement it yet (warning)")


def test_commands_that_need_a_valid_catalogue_refuse_an_invalid_one(project: Path, capsys) -> None:
    write_paper(project, "novel.yaml", NOVEL.replace("year: 2023", "year: 1800"))
    before = snapshot(project)
    for command in (["readme"], ["export"], ["import-awesome", str(project / "catalog/taxonomy.yaml")]):
        code, _, err = run(capsys, *command, "--root", str(project))
        assert code == 1
        assert err.splitlines()[-1] == "atlas: 1 catalogue error(s); nothing written"
        assert "Traceback" not in err
    assert snapshot(project) == before


def test_a_folder_without_a_catalogue_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "validate", "--root", str(tmp_path))
    assert code == 1 and err.count("\n") == 1 and "has no catalog/ folder" in err


def test_export_writes_the_three_files(project: Path, capsys) -> None:
    code, _, _ = run(capsys, "export", "--root", str(project))
    assert code == 0
    out_dir = project / "build/exports"
    assert sorted(p.name for p in out_dir.iterdir()) == ["catalog.json", "papers.bib", "papers.csv"]
    assert len(json.loads((out_dir / "catalog.json").read_text())["papers"]) == 2
    code, _, _ = run(capsys, "export", "--root", str(project), "--out", str(project / "elsewhere"))
    assert code == 0 and (project / "elsewhere/papers.csv").exists()


def test_schema_check_fails_until_the_files_are_written(project: Path, capsys) -> None:
    assert run(capsys, "schema", "--check", "--root", str(project))[0] == 1
    assert run(capsys, "schema", "--root", str(project))[0] == 0
    assert sorted(p.name for p in (project / SCHEMA_DIR).iterdir()) == [
        "paper.schema.json",
        "taxonomy.schema.json",
    ]
    assert run(capsys, "schema", "--check", "--root", str(project))[0] == 0


def test_new_scaffolds_an_entry_and_lists_what_to_fill(project: Path, capsys) -> None:
    code, out, _ = run(
        capsys, "new", "--root", str(project), "--title", "Tiny Tuning: A Test", "--arxiv", "2401.00001",
        "--category", "selective", "--fm", "LLM", "VLM",
    )  # fmt: skip
    path = project / "catalog/papers/tiny-tuning.yaml"
    assert code == 0 and out.splitlines() == [
        f"created {path}",
        "fill in: authors, venue, year, subcategory, summary, refimpl.method",
        "then run: atlas validate && atlas readme",
    ]
    text = path.read_text()
    assert "title: 'Tiny Tuning: A Test'\n" in text and "arxiv: '2401.00001'\n" in text
    assert "foundation_models:\n- LLM\n- VLM\n" in text
    code, _, err = run(capsys, "validate", "--root", str(project))
    assert code == 1 and "catalog/papers/tiny-tuning.yaml:" in err


def test_new_refuses_to_overwrite_and_rejects_bad_input(project: Path, capsys) -> None:
    before = (project / "catalog/papers/lora.yaml").read_bytes()
    for argv, message in [
        (["--title", "LoRA again", "--key", "lora"], "lora.yaml already exists; choose another --key"),
        (
            ["--title", "X", "--category", "nope"],
            "unknown category 'nope'; choose one of: selective, reparameterization",
        ),
        (["--title", "X", "--fm", "XFM"], "unknown FM type 'XFM'; choose from: LLM, VLM"),
        (["--title", "X", "--arxiv", "1234"], "arXiv id '1234': expected a new-style id such as 2106.09685"),
        (
            ["--title", "X", "--key", "Bad Key"],
            "key 'Bad Key': use lowercase letters and digits joined by hyphens",
        ),
    ]:
        code, _, err = run(capsys, "new", "--root", str(project), *argv)
        assert code == 1 and err.startswith("atlas: error: ") and err.strip().endswith(message)
        assert err.count("\n") == 1
    assert (project / "catalog/papers/lora.yaml").read_bytes() == before
    assert sorted(p.name for p in (project / "catalog/papers").iterdir()) == ["bitfit.yaml", "lora.yaml"]


def test_new_derives_a_free_key_from_the_title(project: Path, capsys) -> None:
    assert run(capsys, "new", "--root", str(project), "--title", "LoRA: Something Else")[0] == 0
    assert (project / "catalog/papers/lora-2.yaml").exists()
