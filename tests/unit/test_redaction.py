"""The secret matcher: the same cuts as one alternation of every value, at a fraction of the
compiles and of the cost per line."""

from __future__ import annotations

import gc
import re
import sys
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jtrades import redaction
from jtrades.redaction import SecretSet, trie_pattern

MASK = "#"
# secrets from an alphabet with regex metacharacters; filler from one they never use
SECRET = st.text(alphabet="ab.*(|\\?", min_size=1, max_size=8)
FILLER = st.text(alphabet="XYZ \n", min_size=1, max_size=3)


def reference(values: set[str], text: str) -> str:
    """One alternation of every value, longest first: what the set must cut the same way."""
    alternatives = sorted((re.escape(v) for v in values), key=len, reverse=True)
    return re.sub("|".join(alternatives), MASK, text) if values else text


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(SECRET, min_size=1, max_size=12, unique=True),
    picks=st.lists(st.integers(min_value=0, max_value=11), max_size=10),
    fillers=st.lists(FILLER, min_size=11, max_size=11),
    cut_after=st.sets(st.integers(min_value=0, max_value=11)),
    fresh_max=st.integers(min_value=0, max_value=4),
)
def test_cuts_as_one_alternation_whatever_was_compiled_when(
    secrets: list[str],
    picks: list[int],
    fillers: list[str],
    cut_after: set[int],
    fresh_max: int,
) -> None:
    """Values added in any order, with lines cut in between (so some are compiled into the
    pattern and some still cut literally): a line of values apart cuts like the reference."""
    words = [secrets[i % len(secrets)] for i in picks]
    text = fillers[0] + "".join(w + f for w, f in zip(words, fillers[1:], strict=False))
    held = SecretSet(fresh_max=fresh_max)
    for i, value in enumerate(secrets):
        held.add(value)
        if i in cut_after:
            held.cut(text, MASK)
    assert held.cut(text, MASK) == reference(set(secrets), text)
    for w in words:  # and no value survives whole
        assert w not in held.cut(text, MASK).replace(MASK, "\0")


def test_the_trie_pattern_matches_the_longest_value_at_a_position() -> None:
    pattern = re.compile(trie_pattern(["tok-1", "tok-12", "tok-123", "tak"]))
    assert pattern.sub(MASK, "tok-1234 tok-12 tok-1x tak") == "#4 # #x #"


def test_a_thousand_registrations_compile_about_thirty_times() -> None:
    """Each value added while lines are being logged: the pattern is recompiled once per
    ``fresh_max`` values, not once per value."""
    held = SecretSet(fresh_max=32)
    for i in range(1000):
        held.add(f"recorder-token-{i:04d}-{'x' * 20}")
        assert held.cut(f"line with recorder-token-{i:04d}-{'x' * 20} in it", MASK) == (
            f"line with {MASK} in it"
        )
    assert held.compiles <= 1000 // 32 + 2


def test_a_slot_holds_its_newest_values_and_the_dead_ones_leave() -> None:
    held = SecretSet(keep_per_slot=2, fresh_max=1)
    for i in range(5):
        held.add(f"login-token-{i}", slot=("demo", "alice"))
        held.cut("warm", MASK)
    assert held.values() == {"login-token-3", "login-token-4"}
    assert held.cut("login-token-3 login-token-4", MASK) == f"{MASK} {MASK}"


def test_a_line_cut_in_the_middle_of_a_compile_does_not_hang_and_is_cut() -> None:
    """The garbage collector runs where the compile allocates, and a finalizer logs (asyncio's
    "Future exception was never retrieved"): that line is cut by the same thread, the lock
    held. A plain lock hung the thread for good (seen in CI: a CLI test's thread, and the
    event loop's executor shutdown behind it)."""
    s = SecretSet(fresh_max=2)
    for i in range(3):
        s.add(f"old-secret-{i}")
    s.add("new-secret")  # past fresh_max: the next cut compiles
    nested: list[str] = []

    def compiling() -> bool:  # building the pattern, the lock held
        frame = sys._getframe()
        while frame is not None:
            if frame.f_code.co_name == "trie_pattern":
                return True
            frame = frame.f_back  # type: ignore[assignment]
        return False

    def during_collection(phase: str, _info: dict[str, int]) -> None:
        if phase == "start" and not nested and compiling():
            nested.append(s.cut("lost: new-secret and old-secret-1", MASK))
            s.add("added-meanwhile")  # by the same thread: the compile must not drop it

    old = gc.get_threshold()
    gc.callbacks.append(during_collection)
    gc.set_threshold(1)  # a collection at nearly every allocation: inside the compile too
    try:
        worker = threading.Thread(target=s.cut, args=("x", MASK), daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "the compile's thread hangs on its own lock"
    finally:
        gc.callbacks.remove(during_collection)
        gc.set_threshold(*old)
    assert nested == [f"lost: {MASK} and {MASK}"]  # cut with the matchers as they stood
    assert s.cut("new-secret old-secret-2 added-meanwhile", MASK) == f"{MASK} {MASK} {MASK}"


LONG = "abcdef-INNER7-123456"  # a held secret
INNER = "INNER7"  # a later one, part of it (the case ``add`` asks a compile for)


def test_a_line_cut_during_a_compile_for_a_nested_value_masks_the_secret_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finalizer logs from inside the compile that takes in a value nested in a compiled
    one: the nested cut uses the matchers as they stand, and cut the literal first, which
    broke the compiled value's match and left the rest of the secret in the line (review)."""
    s = SecretSet(fresh_max=1)
    s.add(LONG)
    s.add("pad-secret-0")
    s.cut("warm", MASK)  # LONG is in the pattern now
    s.add(INNER)  # nested in a compiled value: the next cut compiles
    nested: list[str] = []
    real = redaction.trie_pattern

    def logging_meanwhile(values: Any) -> str:  # stands for the finalizer's moment
        nested.append(s.cut(f"lost: {LONG}", MASK))
        return real(values)

    monkeypatch.setattr(redaction, "trie_pattern", logging_meanwhile)
    s.cut("x", MASK)
    assert nested == [f"lost: {MASK}"]


def test_a_value_added_during_a_compile_is_compiled_by_the_next_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Added by the compiling thread (a finalizer's moment), nested in a compiled value: it
    stays a literal and the next cut compiles it, where the compile cleared the request and
    every later line cut the literal before the pattern (review)."""
    s = SecretSet(fresh_max=1)
    s.add(LONG)
    s.cut("warm", MASK)
    s.add("other-secret-1")
    s.add("other-secret-2")  # past fresh_max: the next cut compiles
    real = redaction.trie_pattern
    added: list[bool] = []

    def adding_meanwhile(values: Any) -> str:
        if not added:
            added.append(True)
            s.add(INNER)
        return real(values)

    monkeypatch.setattr(redaction, "trie_pattern", adding_meanwhile)
    s.cut("x", MASK)
    monkeypatch.setattr(redaction, "trie_pattern", real)
    compiles = s.compiles
    assert s.cut(f"later: {LONG} and {INNER}", MASK) == f"later: {MASK} and {MASK}"
    assert s.compiles == compiles + 1


def test_a_line_cut_while_a_value_is_added_compiles_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line cut while ``add`` holds the lock (a finalizer's moment) compiled there, and
    ``add`` then wrote back the pattern it had read with the compile marked done: the new
    pattern lost, later lines cut a literal before the old pattern (review)."""
    s = SecretSet(fresh_max=1)
    s.add(LONG)
    s.add("pad-secret-0")
    s.cut("warm", MASK)
    compiles = s.compiles
    real = sorted
    cut_inside: list[str] = []

    def sorting(*args: Any, **kw: Any) -> Any:  # ``add`` sorts its literals, the lock held
        if not cut_inside:
            cut_inside.append(s.cut("a line a finalizer logs", MASK))
        return real(*args, **kw)

    monkeypatch.setattr(redaction, "sorted", sorting, raising=False)
    s.add(INNER)
    monkeypatch.undo()
    assert cut_inside
    assert s.compiles == compiles  # nothing compiled inside ``add``
    assert s.cut(f"later: {LONG} and {INNER}", MASK) == f"later: {MASK} and {MASK}"
