"""`atlas site` builds into a temporary folder and swaps it in only when complete: a failed build leaves the
previous site as it was."""

from __future__ import annotations

from pathlib import Path

from atlas.cli import main
from atlas.site.sandbox import copy_project


def test_a_failed_build_leaves_the_previous_site_intact(tmp_path: Path, capsys) -> None:
    project = copy_project(Path(__file__).resolve().parents[2], tmp_path / "project")
    out = tmp_path / "published"
    assert main(["site", "--root", str(project), "--out", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert (out / "index.html").exists() and (out / "explorer" / "index.html").exists()

    paper = project / "catalog" / "papers" / "lora.yaml"
    paper.write_text(paper.read_text(encoding="utf-8").replace("year: 2022", "year: 1066"), encoding="utf-8")
    assert main(["site", "--root", str(project), "--out", str(out)]) == 1
    assert "left as it was" in capsys.readouterr().err
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".published")], (
        "staging folder left behind"
    )
