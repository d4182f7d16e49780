"""The demo lab's job scripts: a small training run and the simulated "other user"'s job.

They run as real processes (on this machine, through the simulated hosts' agents), so
they are plain scripts: standard library only, Python >= 3.8, no import of ``app``.
"""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
TRAIN_SCRIPT = FOLDER / "train_demo.py"
OTHER_USER_SCRIPT = FOLDER / "other_user_job.py"
