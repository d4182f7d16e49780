"""The console over a real store: tail page, follow, scroll-up pause, search, paging."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.metrics.metricstore import MetricStore
from app.core.queue.runstore import RunStore
from app.ui.common.data_worker import DataWorker
from app.ui.run_window.console_pager import PAGE_BYTES, clean_line
from app.ui.run_window.console_view import ConsoleView
from tests.harness.run_fixtures import add_log, console_lines, key_of, open_store, start_run

pytestmark = pytest.mark.gui


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABDECK_HOME", str(tmp_path))
    store = open_store(tmp_path)
    runstore, ms = RunStore(store), MetricStore(store)
    key = key_of(runstore, start_run(runstore))
    yield ms, key
    store.close()


@pytest.fixture
def make_console(qtbot):
    made = []

    def make(ms: MetricStore, key: str) -> ConsoleView:
        worker = DataWorker("labdeck-test-console")
        view = ConsoleView(worker, ms, key)
        qtbot.addWidget(view)
        view.resize(900, 500)
        view.show()
        made.append((view, worker))
        qtbot.waitSignal(view.text_changed, timeout=5000).wait()
        return view

    yield make
    for view, worker in made:
        view.stop()
        worker.stop()


def _grow(qtbot, view: ConsoleView, ms: MetricStore, key: str, data: bytes) -> None:
    add_log(ms, key, data)
    with qtbot.waitSignal(view.text_changed, timeout=5000):
        view.notify_log()


def test_clean_line_is_what_a_terminal_leaves() -> None:
    assert clean_line("\x1b[1;31mERROR\x1b[0m boom\r") == "ERROR boom"
    assert clean_line("  3%|▍ | 3/100\r 50%|█████ | 50/100") == " 50%|█████ | 50/100"
    assert clean_line("\x1b]0;title\x07bell\x07 done") == "bell done"
    assert len(clean_line("x" * 50_000)) < 10_100


def test_shows_follows_pauses_and_jumps(qtbot, stored, make_console) -> None:
    ms, key = stored
    add_log(ms, key, console_lines(0, 400) + b"epoch 0:  10%\repoch 0:  40%")
    view = make_console(ms, key)
    text = view.plain_text()
    assert "step 3990 | loss" in text and "\x1b" not in text
    assert text.endswith("epoch 0:  40%")  # the progress line collapsed to its last state
    bar = view.text.verticalScrollBar()
    assert view.following and bar.value() == bar.maximum() > 0

    # The partial line completes, then new lines arrive: appended, still at the end.
    _grow(qtbot, view, ms, key, b"\repoch 0: 100%\n" + console_lines(400, 50))
    text = view.plain_text()
    assert "epoch 0: 100%\n" in text and "40%" not in text
    assert "step 4490 |" in text and bar.value() == bar.maximum()

    # Scrolled up: the text stands still, the jump button says output waits below.
    bar.setValue(bar.maximum() // 2)
    assert not view.following
    before = view.plain_text()
    add_log(ms, key, console_lines(450, 20))
    view.notify_log()
    qtbot.wait(600)  # three display ticks: nothing may be appended meanwhile
    assert view.plain_text() == before
    assert "new output" in view.end_button.text() and view.end_button.isEnabled()

    with qtbot.waitSignal(view.text_changed, timeout=5000):
        view.end_button.click()
    assert view.following and "step 4690 |" in view.plain_text()
    assert bar.value() == bar.maximum()


def test_search_finds_and_highlights(qtbot, stored, make_console) -> None:
    ms, key = stored
    add_log(ms, key, console_lines(0, 300) + b"Traceback: CUDA out of memory\n"
            + console_lines(300, 300))
    view = make_console(ms, key)
    view.search.setText("cuda OUT of")
    assert view.find_next()
    cursor = view.text.textCursor()
    assert cursor.selectedText() == "CUDA out of"
    assert cursor.block().text() == "Traceback: CUDA out of memory"
    assert not view.following  # looking at a match: new output must not move it
    assert view.match_label.text().startswith("1 match")
    assert len(view.text.extraSelections()) == 1
    view.search.setText("no such words")
    assert not view.find_next()
    assert "not in the loaded part" in view.match_label.text()


def test_big_log_loads_pages_only(qtbot, stored, make_console) -> None:
    ms, key = stored
    # ~2.2 MB with a UTF-8 character and a bad byte at a chunk edge.
    block = console_lines(0, 10_000)
    add_log(ms, key, block + "grüße ".encode() + b"\xff\n" + block)
    view = make_console(ms, key)
    shown = view.plain_text()
    assert len(shown.encode()) <= PAGE_BYTES
    assert shown.splitlines()[-1] == clean_line(block.decode().splitlines()[-1])
    assert "showing" in view.status.text() and view.earlier_button.isEnabled()
    first_before = shown.splitlines()[0]
    with qtbot.waitSignal(view.text_changed, timeout=5000):
        view.earlier_button.click()
    earlier = view.plain_text()
    assert first_before in earlier and earlier.splitlines()[0] != first_before
    assert not view.following
    # A split multibyte character survives, an invalid byte becomes U+FFFD.
    add_log(ms, key, "weiß".encode()[:-1])
    add_log(ms, key, "weiß".encode()[-1:] + b" \xfe ok\n")
    with qtbot.waitSignal(view.text_changed, timeout=5000):
        view.jump_to_end()
    assert view.plain_text().splitlines()[-1] == "weiß \ufffd ok"
