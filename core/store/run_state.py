"""A run's state machine: the states a run folder's ``status.json`` may record and the moves between them.

Why one table: the status is written by the launcher (starting; stopped when a Stop lands before training), the
trainers' frame (running and how it ended), the early-exit path of every command line (could not start, stopped
before training) and the comparison. Each used to write ``state=...`` itself; now every write that names a state goes
through ``next_status`` (called by ``Run.write_status``), which refuses a move the table does not allow, so a bug
that would, say, mark a completed run running again without a resume fails where it happens instead of in a user's
table.

    (new) ──> starting ──> running ──> completed, stopped, failed
                 └──> stopped, failed (before training)
    stopped, failed, completed ──> starting (the app's Resume), running (a command line's --resume)
    running ──> running: a new process resuming a run whose process died (its file still says running)
    any state written again is no move; a folder is created in any recorded state (create_run: tests, imports)

One owner: while a process trains a run, it alone writes the run's status (it holds the run's lock); the app's Stop is
a request (``stop_request.json`` and SIGTERM), so two processes never race on ``status.json``. ``shown_state`` adds
what the record cannot say itself: ``stopping`` (running, a Stop asked of its process) and ``died`` (live, its
process gone). Phases (data generation, tiling, testing) are the ``phase`` field inside ``running``, not states. The
resume invariant, that every state a run can be left in is one ``core.store.resume.open_for_resume`` continues, is
tested directly for every state in ``tests/test_run_state.py``.
"""
from __future__ import annotations

from typing import Any

STARTING, RUNNING, STOPPED, COMPLETED, FAILED = "starting", "running", "stopped", "completed", "failed"
STOPPING, DIED = "stopping", "died"  # shown, never recorded
STATES = (STARTING, RUNNING, STOPPED, COMPLETED, FAILED)  # what status.json may hold
LIVE_STATES = (STARTING, RUNNING)  # a process is (or should be) working on the run
SHOWN_LIVE = (STARTING, RUNNING, STOPPING)  # the same, as shown
ENDED_STATES = (STOPPED, COMPLETED, FAILED)

TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({STARTING, RUNNING, FAILED}),  # a launcher's or command line's folder; a hand-made one that failed
    STARTING: frozenset({RUNNING, STOPPED, FAILED}),
    RUNNING: frozenset({RUNNING, STOPPED, COMPLETED, FAILED}),
    STOPPED: frozenset({STARTING, RUNNING}),
    COMPLETED: frozenset({STARTING, RUNNING}),  # resumed with more steps; a resume that cannot start leaves it so
    FAILED: frozenset({STARTING, RUNNING}),
}


class IllegalTransition(RuntimeError):
    """A write would move a run between states the machine does not connect."""


def check_transition(old: str | None, new: str) -> None:
    if new not in STATES:
        raise IllegalTransition(f"{new!r} is not a state a run records; the states are {', '.join(STATES)}")
    # an unreadable or foreign status is read as failed (Run.status): only a start or a failure replaces it
    allowed = TRANSITIONS[old] if old in TRANSITIONS else TRANSITIONS[FAILED]
    if new not in allowed and new != old:  # a state written again is no move
        raise IllegalTransition(f"a {old or 'new'} run cannot become {new} (from {old or 'new'}: "
                                f"{', '.join(sorted(allowed))})")


def next_status(old: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``old`` updated by ``fields``; a ``state`` among them must be a move the table allows."""
    if "state" in fields:
        check_transition(old.get("state"), fields["state"])
    return {**old, **fields}


def shown_state(recorded: str | None, process_alive: bool, stop_asked: bool) -> str:
    """What a table shows: the record, except ``died`` for a live record whose process is gone and ``stopping``
    for a running one whose process was asked to stop."""
    state = recorded or FAILED
    if state in LIVE_STATES and not process_alive:
        return DIED
    if state == RUNNING and stop_asked:
        return STOPPING
    return state
