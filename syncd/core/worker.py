"""A container worker's decisions, as data. Pure: the worker (syncd/workers.py) shows what it
knows as a `WorkerView`, asks `next_step`, and does what the answer says; after a failure
`retry_delay` says how long to back off. Tested on plain values, with no threads, files or
sleeps (tests/test_decisions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from syncd.core.backoff import backoff
from syncd.settings import WorkerSettings


class WorkerState(str, Enum):
    """What a worker is doing, as `syncd status` shows it."""

    STARTING = "starting"
    IDLE = "idle"
    WAITING_FOR_ANSWERS = "waiting for answers"  # pipelined batches written, answers not in yet
    RECONCILING = "reconciling"
    PUSHING = "pushing"
    RETRYING = "retrying"  # backing off after a failure (the delay is shown beside it)
    WAITING_FOR_FIX = "waiting for a fix"  # a permanent error: retried rarely


class Step(str, Enum):
    RECONCILE = "reconcile"  # compare the whole tree with the container, send the difference
    PUSH = "push"  # send what is pending
    WAIT_FOR_WORK = "wait for work"  # up to date: sleep until something is submitted
    WAIT_FOR_ANSWERS = "wait for answers"  # must reconcile, but pipelined batches are still landing


@dataclass(frozen=True, slots=True)
class WorkerView:
    manifest_known: bool  # does the worker trust what it believes the container holds?
    has_work: bool  # paths or batches submitted and not yet sent
    answers_pending: int  # pipelined batches whose answer has not come
    stale: bool  # the container changed under syncd (a symlink was in the way): compare again


def next_step(view: WorkerView) -> Step:
    """What to do now. A reconcile waits for pipelined answers first: they change the tree it
    is about to list."""
    if not view.manifest_known or view.stale:
        return Step.WAIT_FOR_ANSWERS if view.answers_pending else Step.RECONCILE
    if not view.has_work:
        return Step.WAIT_FOR_WORK
    return Step.PUSH


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float
    state: WorkerState

    def describe(self) -> str:
        return f"{self.state.value} in {self.delay:.1f}s" if self.state is WorkerState.RETRYING else \
            f"{self.state.value} (retrying every {self.delay:.0f}s)"


def retry_delay(failures: int, permanent: bool, settings: WorkerSettings) -> Retry:
    """After the `failures`-th failure in a row: how long to wait, and how to say so."""
    if permanent:
        return Retry(settings.permanent_retry, WorkerState.WAITING_FOR_FIX)
    return Retry(backoff(failures, settings.backoff_start, settings.backoff_max), WorkerState.RETRYING)
