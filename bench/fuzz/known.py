"""The gateway bugs the fuzzer has found and that are still open: the CI sample tolerates these."""

from __future__ import annotations

import re

# Known gateway bugs: a substring of the finding or invariant-failure text -> the strict xfail
# test in tests/fuzz/test_fuzz_bugs.py that pins it. The CI sample tolerates these (and only
# these); when a bug is fixed, its xfail test starts passing (strict: the suite fails) and both
# the marker and the entry here go.
KNOWN: dict[str, str] = {
    # All bugs found so far are fixed; tests/fuzz/test_fuzz_bugs.py keeps one regression test
    # each. A new finding goes here with its pinning xfail test until it is fixed.
}
# Found by review while fuzzing, pinned in the same file but not reachable by an oracle here:
# test_invalid_upgrade_never_reaches_connect, test_client_text_in_a_field_stays_on_one_log_line.


def known_bug(text: str) -> str | None:
    """The xfail test that pins the bug behind a finding or failure, if it is a known one."""
    return next((test for pattern, test in KNOWN.items() if re.search(pattern, text)), None)
