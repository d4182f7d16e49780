"""Text that a shell would act on, for tests that pass values to jobs: they must arrive
byte for byte and never run (``$(touch canary)`` must not make a file)."""

from __future__ import annotations

from hypothesis import strategies as st

NASTY = ["$(touch canary)", "`touch canary`", "; touch canary", "a\ntouch canary\n", "'",
         '"', "\\", "$HOME", "${PATH}", "*", "~", "-rf", "--lr=1", "", " ", "é ✓", "!!", "&&"]


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
               max_size=24) | st.sampled_from(NASTY)


ENV_NAME = st.from_regex(r"X_[A-Z0-9_]{0,8}", fullmatch=True)
