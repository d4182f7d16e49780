"""TrustPrompter: a worker thread asks, the dialog answers, the worker gets the answer."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt

from app.ui.cluster.hostkey_dialog import HostKeyDialog, show_hostkey_changed
from app.ui.cluster.trust_prompter import TrustPrompter
from ssh_backend.hostkeys import HostKeyQuestion

pytestmark = pytest.mark.gui

QUESTION = HostKeyQuestion("gpu1.lab", 2222, "ssh-ed25519",
                           "SHA256:3dKxq0m9r6Yt8lJ7mC2pZbWcQn5vE1uA4sF0gH2iJkL")


def _ask_from_worker(prompter: TrustPrompter) -> tuple[threading.Thread, list[bool]]:
    answers: list[bool] = []
    t = threading.Thread(target=lambda: answers.append(prompter(QUESTION)), name="fake-ask")
    t.start()
    return t, answers


@pytest.mark.parametrize(("button", "expected"), [("trust_button", True),
                                                   ("cancel_button", False)])
def test_worker_gets_the_users_answer(qtbot, button: str, expected: bool) -> None:
    prompter = TrustPrompter()
    with qtbot.waitSignal(prompter.prompt_shown, timeout=3000) as blocker:
        thread, answers = _ask_from_worker(prompter)
    dialog = blocker.args[0]
    assert isinstance(dialog, HostKeyDialog)
    assert dialog.fingerprint_label.text() == QUESTION.fingerprint
    assert dialog.cancel_button.isDefault() and not dialog.trust_button.isDefault()
    assert thread.is_alive()  # still waiting for the user
    qtbot.mouseClick(getattr(dialog, button), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=3000)
    assert answers == [expected]
    # A declined key is remembered for the host's "Trust…" button, a trusted one is not.
    assert (prompter.declined_question({"gpu1.lab"}) is not None) is (not expected)


def test_closing_refuses_a_pending_question(qtbot) -> None:
    prompter = TrustPrompter()
    with qtbot.waitSignal(prompter.prompt_shown, timeout=3000):
        thread, answers = _ask_from_worker(prompter)
    prompter.close()
    thread.join(3)
    assert answers == [False]
    assert prompter(QUESTION) is False  # and every later one


def test_approved_key_is_accepted_without_a_second_dialog(qtbot) -> None:
    prompter = TrustPrompter()
    prompter.approve(QUESTION)
    shown: list[object] = []
    prompter.prompt_shown.connect(shown.append)
    thread, answers = _ask_from_worker(prompter)
    thread.join(3)
    assert answers == [True] and shown == []


def test_changed_key_box_is_a_hard_stop(qtbot) -> None:
    box = show_hostkey_changed(None, "gpu1.lab", 2222)
    qtbot.addWidget(box)
    from PySide6.QtWidgets import QMessageBox

    assert box.standardButtons() == QMessageBox.StandardButton.Close  # nothing to continue
    assert "ssh-keygen -R '[gpu1.lab]:2222'" in box.informativeText()
    assert "CHANGED" in box.text()
