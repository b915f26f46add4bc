"""The CLI's quick parameter coercion (xdpctl/cli/coerce.py) answers every
value exactly as typer's own coercion does: the same value, or the same
error and exit code. An oracle: each argument list is run through a small
typer app twice, with the quick path and with typer's original."""

from __future__ import annotations

from typing import Optional

import pytest
import typer
import typer.core
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from xdpctl.cli import app, coerce  # importing the CLI installs the quick path

assert isinstance(app, typer.Typer)
PARAM = getattr(typer.core, "_TyperParameter", None)
QUICK = getattr(getattr(PARAM, "get_runtime_param", None), "original", None)


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def run(name: str = typer.Argument(...),
            count: int = typer.Option(3, "--count", min=1, max=10),
            any_int: Optional[int] = typer.Option(None, "--any-int"),
            ratio: float = typer.Option(0.5, "--ratio", min=0),
            flag: bool = typer.Option(False, "--flag"),
            words: Optional[list[str]] = typer.Option(None, "--word"),
            ids: Optional[list[int]] = typer.Option(None, "--id", min=1, max=4294967295)) -> None:
        typer.echo(repr((name, count, any_int, ratio, flag, words, ids)))

    return app


def _both(argv: list[str], monkeypatch) -> tuple:
    runner = CliRunner()
    quick = runner.invoke(_app(), argv)
    with monkeypatch.context() as m:
        m.setattr(PARAM, "get_runtime_param", QUICK)
        full = runner.invoke(_app(), argv)
    return (quick.exit_code, quick.output), (full.exit_code, full.output)


def test_installed_on_this_typer() -> None:
    """This environment's typer has the per-parameter hook, so the quick
    path is in use (else this test file would compare typer with itself)."""
    assert QUICK is not None
    assert coerce.install(PARAM) is False  # already installed: not twice
    params = typer.main.get_command(_app()).params
    taken = {p.name: type(p.get_runtime_param()).__name__ for p in params}
    assert taken == dict.fromkeys(["name", "count", "any_int", "ratio", "flag", "words", "ids"], "QuickParam")


@pytest.mark.parametrize("argv", [
    ["a"], ["a", "--count", "10"], ["a", "--count", "11"], ["a", "--count", "0"], ["a", "--count", "-1"],
    ["a", "--count", "007"], ["a", "--count", " 5"], ["a", "--count", "5.0"], ["a", "--count", "1_0"],
    ["a", "--count", "x"], ["a", "--any-int", "-12"], ["a", "--any-int", "99999999999999999999"],
    ["a", "--any-int", "9" * 5000], ["a", "--ratio", "1." + "5" * 5000],
    ["a", "--ratio", "1.25"], ["a", "--ratio", "-0.5"], ["a", "--ratio", "1e3"], ["a", "--ratio", "nan"],
    ["a", "--ratio", "3"], ["a", "--flag"], ["a", "--word", "x", "--word", ""], ["a", "--id", "1", "--id", "2"],
    ["a", "--id", "0"], ["a", "--id", "4294967296"], ["a", "--id", "7", "--id", "z"], [""], ["é\u00b2"],
])
def test_same_answer_as_typer(argv, monkeypatch) -> None:
    quick, full = _both(argv, monkeypatch)
    assert quick == full


NUMBERISH = st.text(alphabet="0123456789-+._ e\u00b2x", max_size=8)


@settings(max_examples=150, deadline=None)
@given(count=NUMBERISH, any_int=NUMBERISH, ratio=NUMBERISH, ident=NUMBERISH)
def test_same_answer_as_typer_for_any_text(count, any_int, ratio, ident) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for option, value in (("--count", count), ("--any-int", any_int), ("--ratio", ratio), ("--id", ident)):
            quick, full = _both(["a", option, value], mp)
            assert quick == full, (option, value)
