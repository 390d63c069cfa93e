"""`python -m refimpl list / info`: what a user sees before running anything."""

from refimpl.cli import main


def test_list_filters_by_category(capsys):
    assert main(["list", "--category", "reparameterization"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("lora ") for line in lines)
    assert all("reparameterization" in line for line in lines)


def test_info_shows_update_rule_options_and_formula(capsys):
    assert main(["info", "lora"]) == 0
    out = capsys.readouterr().out
    assert "h = W0 x + (alpha/r) B A x" in out
    assert "r = 8" in out and "alpha = 16.0" in out
    assert "r · (in + out)" in out
    assert "reparameterization/lora.py" in out


def test_unknown_method_is_a_clear_error_not_a_traceback(capsys):
    assert main(["info", "no_such_method"]) == 2
    assert "unknown method 'no_such_method'" in capsys.readouterr().err
