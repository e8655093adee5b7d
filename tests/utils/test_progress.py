"""Progress when stdout is not a terminal: plain unwrapped lines every N steps, with rate and ETA."""
from __future__ import annotations

import io
import re

from reidkit.utils.progress import PlainProgress, make_progress


def test_not_a_terminal_gives_plain_lines_every_n_steps(monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS_EVERY", "4")
    out = io.StringIO()  # not a tty: a log file or a pipe
    with make_progress(stream=out) as bar:
        assert isinstance(bar, PlainProgress)
        task = bar.add_task("fine-tune", total=10, images_per_step=64)
        for i in range(10):
            bar.advance(task)
            if i == 5:
                bar.update(task, description="epoch 1/2 loss 4.321")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # at 4, 8 and the last step
    assert lines[0].startswith("fine-tune  4/10 (40%)") and lines[-1].startswith("epoch 1/2 loss 4.321  10/10 (100%)")
    for ln in lines:
        assert re.search(r"[\d.]+ it/s, [\d.]+ img/s  elapsed \d+:\d\d", ln), ln
    assert "ETA" in lines[0]


def test_time_based_lines_and_long_text_unwrapped():
    out = io.StringIO()
    bar = PlainProgress(stream=out, every=1000, seconds=0.0)
    task = bar.add_task("x" * 300, total=None)
    bar.advance(task)
    bar.console.print("[bold]epoch 1/8[/]  " + "y" * 300)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("x" * 300) and lines[1] == "epoch 1/8  " + "y" * 300


def test_disabled_and_hidden_tasks_print_nothing(monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    out = io.StringIO()
    with make_progress(stream=out) as bar:
        t = bar.add_task("a", total=3)
        for _ in range(3):
            bar.advance(t)
    out2 = io.StringIO()
    with PlainProgress(stream=out2, every=1) as bar:
        t = bar.add_task("hidden", total=3, visible=False)
        bar.advance(t)
    assert out.getvalue() == "" and out2.getvalue() == ""


def test_cli_errors_are_never_wrapped(tmp_path):
    from typer.testing import CliRunner

    from reidkit.cli.main import app

    missing = tmp_path / ("a_rather_long_folder_name_" * 6) / "q.safetensors"
    r = CliRunner().invoke(app, ["eval", str(missing), str(missing)])
    assert r.exit_code == 2
    line = [ln for ln in r.output.splitlines() if ln.startswith("error:")][0]
    assert str(missing) in line and line.endswith("feature file not found")
