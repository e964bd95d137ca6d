"""The secret values the process has handled, and the one pass that cuts them out of a string.

Every log line's fields and rendered text go through ``SecretSet.cut``, so its cost is paid per
line, and it grows with the set: one webhook token per recorder that has posted, a password and
an access token or two per broker login. One alternation of every value tries them one after
another at each position, and was recompiled whenever a value came (on a recorder's first alert
after a start). With a thousand webhook tokens: 165 µs to cut a 124-character log line and 9 ms
per compile. Here the values are compiled as a trie (at each position the engine follows one
path of characters: 13 µs for the same line), and a value added since the last compile is cut
with ``str.replace`` until ``fresh_max`` (32) have gathered: a thousand registrations, each
followed by a line, compiled 30 times instead of a thousand.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable, Iterable
from typing import TypeAlias

_Node: TypeAlias = dict[str, "_Node"]


def trie_pattern(values: Iterable[str]) -> str:
    """A regex matching any of ``values``, the longest first at a position, shaped as their
    trie: a run of single-child nodes is one literal, so the recursion (and the regex's group
    nesting) goes only as deep as the values branch or end inside each other."""
    root: _Node = {}
    for value in values:
        node = root
        for ch in value:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: _Node) -> str:
        run: list[str] = []
        while True:
            ends = "" in node
            kids = sorted((ch, child) for ch, child in node.items() if ch)
            if len(kids) != 1 or ends:
                break
            ch, node = kids[0]
            run.append(re.escape(ch))
        if not kids:
            return "".join(run)
        branches = [re.escape(ch) + build(child) for ch, child in kids]
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:  # greedy: the longer value is tried first, the shorter one on backtracking
            body = f"(?:{body})?"
        return "".join(run) + body

    return build(root)


class SecretSet:
    """Values to cut from text. Registrations may come from any thread; ``cut`` reads one
    immutable pair (pattern, literals), swapped whole, so it never sees a list being changed."""

    def __init__(self, *, keep_per_slot: int = 2, fresh_max: int = 32) -> None:
        # re-entered when a line is cut while this thread changes the set: the garbage
        # collector, run by an allocation there, finalizes a future whose lost exception
        # asyncio logs (a plain lock hung that thread for good: the daemon's event loop, were
        # it there). ``_busy`` says so: the nested cut uses the matchers as they stand, which
        # cut every value held whole (see ``add``), and compiles nothing.
        self._lock = threading.RLock()
        self._busy = False
        self._keep = keep_per_slot
        self._fresh_max = fresh_max
        self._permanent: set[str] = set()
        self._slots: dict[Hashable, list[str]] = {}
        self._compiled: frozenset[str] = frozenset()  # the values in the pattern
        # (the compiled pattern, the values added since, longest first)
        self._matchers: tuple[re.Pattern[str] | None, tuple[str, ...]] = (None, ())
        self._recompile = False
        self.compiles = 0  # for tests and diagnostics

    def add(self, value: str, slot: Hashable | None = None) -> None:
        """Hold ``value``; with a ``slot``, only the slot's ``keep_per_slot`` newest values.
        (Not re-entered: nothing registers a secret from a finalizer.)"""
        with self._lock:
            self._busy = True
            try:
                self._add(value, slot)
            finally:
                self._busy = False

    def _add(self, value: str, slot: Hashable | None) -> None:
        """``add``'s work, the lock held."""
        if slot is None:
            if value in self._permanent:
                return
            self._permanent.add(value)
        else:
            held = self._slots.setdefault(slot, [])
            if value in held:
                return
            held.append(value)
            gone = held[: -self._keep]
            del held[: -self._keep]
            for old in gone:
                self._forget(old)
        pattern, literals = self._matchers
        if value in self._compiled or value in literals:
            return
        # Cut before the pattern, a literal inside a compiled value (or holding one) would
        # break that value's match and leave the rest of it: compile them together, and
        # until then cut that compiled value as a literal too (longest first: whole), so
        # that every pair of matchers a reader may take cuts every value held whole.
        nested = [v for v in self._compiled if value in v or v in value]
        if len(literals) >= self._fresh_max or nested:
            self._recompile = True
        fresh = sorted({*literals, value, *nested}, key=len, reverse=True)
        self._matchers = (pattern, tuple(fresh))

    def _forget(self, value: str) -> None:
        """A slot's old value (the lock held): cut no more unless held elsewhere. A compiled one
        stays in the pattern until the next compile (masking a dead token is harmless)."""
        if value in self._permanent or any(value in held for held in self._slots.values()):
            return
        pattern, literals = self._matchers
        if value in literals:
            self._matchers = (pattern, tuple(v for v in literals if v != value))

    def values(self) -> frozenset[str]:
        """Every value held now."""
        with self._lock:
            return self._held()

    def _held(self) -> frozenset[str]:
        """Every value held now (the lock held)."""
        return frozenset(self._permanent.union(*self._slots.values()))

    def cut(self, text: str, mask: str) -> str:
        """``text`` with every occurrence of a held value replaced by ``mask``."""
        if self._recompile:
            self._compile()
        pattern, literals = self._matchers
        for value in literals:
            if value in text:
                text = text.replace(value, mask)
        return pattern.sub(mask, text) if pattern is not None else text

    def _compile(self) -> None:
        with self._lock:
            # re-entered (``_busy``): the matchers as they stand cut every value held (a new
            # one is among the literals until the compile that takes it in is done)
            if not self._recompile or self._busy:
                return
            self._busy = True
            try:
                held = self._held()
                try:
                    pattern = re.compile(trie_pattern(held)) if held else None
                except (RecursionError, re.error):  # values nested past what the parser takes
                    flat = sorted((re.escape(v) for v in held), key=len, reverse=True)
                    pattern = re.compile("|".join(flat))
                self._compiled = held
                # a value added meanwhile (only this thread could: the lock is held) stays a
                # literal, and is compiled by the next cut
                _, meanwhile = self._matchers
                kept = tuple(v for v in meanwhile if v not in held)
                self._matchers = (pattern, kept)
                self._recompile = bool(kept)
                self.compiles += 1
            finally:
                self._busy = False
