"""Monte-Carlo first-error search over step prefixes (pure bookkeeping, no I/O).

A prefix of length p keeps the first p steps of a trace. It is *alive* when at
least ``threshold`` of its rollouts reach the gold answer. For a wrong trace
the full prefix (p = M) is dead by its own outcome, so the first wrong step is
the step that turns an alive prefix dead: ``first dead prefix - 1``. A trace
whose end says nothing about its steps (cut at max_tokens, or with no answer)
is searched with ``probe_full``: the full prefix is probed like any other, and
when it is alive the trace has no wrong step (-1).

* :class:`LinearSearch` (Math-Shepherd) probes every prefix 1..M-1 with all k
  rollouts: hard label = first dead prefix, soft value = share of successes.
* :class:`BinarySearch` (OmegaPRM) keeps lo (alive) < hi (dead) and probes the
  middle, O(k log M) rollouts. A probe stops drawing rollouts as soon as its
  verdict is settled: alive at the ``threshold``-th success, dead when the
  rollouts left could no longer reach it. Rollouts are drawn in index order
  (1, 2, 4, ... at a time), so the verdict is exactly the one all k would give.
  Like OmegaPRM it assumes values are monotone (once dead, a prefix stays
  dead): it finds *an* alive -> dead boundary, which is the earliest only under
  that assumption. With prefix 2 dead and prefixes 3-7 alive, linear says step
  1 and binary step 7. ``confirm=True`` (method ``mc-binary-confirmed``) then
  probes every prefix before the boundary it did not already see alive, with
  the same early stop, and answers the earliest dead one: linear's label at a
  fraction of its cost.

When either search would blame step 0, it first probes the empty prefix: if
the policy cannot solve the problem from scratch, the trace's first error is
undetermined (None) rather than step 0. A correct trace gets -1 without a
rollout. Searches ask for rollouts with :meth:`requests` -- (prefix, how many
rollouts from index 0 it needs) -- and are fed with :meth:`observe`.
"""

from __future__ import annotations


class _Search:
    def __init__(
        self, n_steps: int, k: int, threshold: int = 1, wrong: bool = True, probe_full=False
    ):
        if threshold > k:
            raise ValueError(f"alive threshold {threshold} exceeds k = {k} rollouts")
        self.n_steps, self.k, self.threshold = n_steps, k, threshold
        # the longest prefix probed: M when the full trace's outcome is not known dead
        self.last = n_steps if probe_full else n_steps - 1
        self.used: dict[int, int] = {}  # prefix -> rollouts its verdict rests on
        self.done = not wrong
        self.result: int | None = -1 if not wrong else None
        self.root_probed = False

    @property
    def n_rollouts(self) -> int:
        return sum(self.used.values())

    def _settle(self, first_error: int) -> None:
        """Finish with ``first_error``, unless it is step 0 and the root is unchecked."""
        if first_error == 0 and not self.root_probed:
            self.root_probed = True
            self._probing_root()
            return
        # every step through the last kept the answer in reach: no wrong step
        self.result, self.done = (-1 if first_error >= self.n_steps else first_error), True

    def _root_verdict(self, alive: bool) -> None:
        self.result, self.done = (0 if alive else None), True

    def _probing_root(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class BinarySearch(_Search):
    def __init__(
        self,
        n_steps: int,
        k: int,
        threshold: int = 1,
        wrong: bool = True,
        probe_full=False,
        confirm: bool = False,
    ):
        super().__init__(n_steps, k, threshold, wrong, probe_full)
        self.lo, self.hi = 0, self.last + 1  # hi: the first prefix known (or taken) dead
        self.probe: int | None = None
        self.outcomes: list[bool] = []
        self.confirm = confirm
        self.checking: dict[int, list[bool]] = {}  # confirmation: prefix -> outcomes so far
        self.found: int | None = None  # the boundary's label, while it is confirmed
        self.dead: set[int] = set()
        if not self.done:
            self._advance()

    def _ask(self, outcomes: list[bool]) -> int:
        return min(self.k, max(self.threshold, 2 * len(outcomes)))

    def _verdict(self, outcomes: list[bool]) -> bool | None:
        """Alive, dead, or None while the rollouts left could still go either way."""
        wins = sum(outcomes)
        if wins >= self.threshold:
            return True
        if wins + (self.k - len(outcomes)) < self.threshold:
            return False
        return None

    def requests(self) -> list[tuple[int, int]]:
        if self.done:
            return []
        if self.checking:
            return [(p, self._ask(o)) for p, o in sorted(self.checking.items())]
        return [(self.probe, self._ask(self.outcomes))]

    def observe(self, prefix_len: int, outcomes: list[bool]) -> None:
        if self.done:
            return
        if self.checking:
            self._observe_check(prefix_len, outcomes)
            return
        if prefix_len != self.probe:
            return
        self.outcomes = list(outcomes)
        alive = self._verdict(outcomes)
        if alive is None:
            return  # undecided: more rollouts on the next request
        self.used[prefix_len] = len(outcomes)
        self.outcomes = []
        if prefix_len == 0:
            self._root_verdict(alive)
            return
        if alive:
            self.lo = prefix_len
        else:
            self.hi = prefix_len
        self._advance()

    def _advance(self) -> None:
        if self.hi - self.lo > 1:
            self.probe = (self.lo + self.hi) // 2
        else:
            self._settle(self.hi - 1)

    def _settle(self, first_error: int) -> None:
        if self.confirm and self.found is None and first_error >= 1:
            # every probe at or before the boundary was alive; check the others
            self.found = first_error
            unseen = [p for p in range(1, min(first_error, self.last) + 1) if p not in self.used]
            self.checking = {p: [] for p in unseen}
            if self.checking:
                return
        super()._settle(first_error)

    def _observe_check(self, prefix_len: int, outcomes: list[bool]) -> None:
        if prefix_len not in self.checking:
            return
        alive = self._verdict(outcomes)
        if alive is None:
            self.checking[prefix_len] = list(outcomes)
            return
        self.used[prefix_len] = len(outcomes)
        if not alive:
            self.dead.add(prefix_len)
        del self.checking[prefix_len]
        if not self.checking:
            super()._settle(min(self.dead) - 1 if self.dead else self.found)

    def _probing_root(self) -> None:
        self.probe = 0


class LinearSearch(_Search):
    def __init__(
        self, n_steps: int, k: int, threshold: int = 1, wrong: bool = True, probe_full=False
    ):
        super().__init__(n_steps, k, threshold, wrong, probe_full)
        self.values: dict[int, list[bool]] = {}
        self.pending = set() if self.done else set(range(1, self.last + 1))
        if not self.done and not self.pending:  # one step: it is the error
            self._settle(0)

    def requests(self) -> list[tuple[int, int]]:
        return [] if self.done else [(p, self.k) for p in sorted(self.pending)]

    def observe(self, prefix_len: int, outcomes: list[bool]) -> None:
        if self.done or prefix_len not in self.pending or len(outcomes) < self.k:
            return
        outcomes = list(outcomes[: self.k])
        self.values[prefix_len] = outcomes
        self.used[prefix_len] = self.k
        self.pending.discard(prefix_len)
        if self.pending:
            return
        if prefix_len == 0:
            self._root_verdict(sum(outcomes) >= self.threshold)
            return
        dead = [p for p in range(1, self.last + 1) if sum(self.values[p]) < self.threshold]
        self._settle(dead[0] - 1 if dead else self.last)

    def _probing_root(self) -> None:
        self.pending = {0}
