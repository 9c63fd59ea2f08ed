"""Running a run's tasks in the curate process itself: no Ray to start, no worker processes, same output.

Why: Ray costs seconds before the first task and after the last (1-2.5 s to start and 0.1-0.6 s to stop
on 2 shared cores at load 3-5, plus 0.5-1 s for the worker processes to start and import the stages),
which is most of a small run. ``curate.pool.open_pool`` picks this pool for small runs and for ``--workers 1``
(``run.executor``). It is the in-process twin of ``curate.pool.WorkerPool``: the same ``_Worker`` that a
Ray actor wraps, so the same ``run_task``, the same commit order (shards renamed into place, then the
stats file), the same resume, the same retries of a task that raised. What it cannot do is survive a
worker process dying (a segfault, the OOM killer): here that process is the driver; a rerun resumes.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from typing import Callable

from curate.execute import TaskOutcome, TaskPlan, task_id_for
from curate.pool import IN_PROCESS, _short_error, _Worker, console, nothing_to_run, progress_bars
from curate.readers import Reader, Task


class LocalPool:
    """Runs a segment's tasks one after another in this process (``executor = "in-process"``)."""

    executor = IN_PROCESS

    def __init__(self, workers: int | None = None, *, show_progress: bool = True):
        self.requested = workers
        self.show_progress = show_progress and sys.stderr.isatty()
        self.size = 1             # what a global stage is told it may use: this process
        self.start_seconds = 0.0  # nothing to start or stop
        self.stop_seconds = 0.0
        self.why = ""

    def __enter__(self) -> "LocalPool":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def say(self, message: str) -> None:
        console().print(f"[bold]curate[/bold] {message}")

    def run(
        self,
        plan: TaskPlan,
        tasks: list[Task],
        readers: dict[str, Reader] | None,
        *,
        label: str,
        total: int,
        on_done: Callable[[TaskOutcome, Task], None],
        max_retries: int = 2,
    ) -> tuple[list[TaskOutcome], dict[str, str]]:
        """Run ``tasks``; returns outcomes and {task_id: error} for tasks that raised on every try."""
        outcomes: list[TaskOutcome] = []
        failed: dict[str, str] = {}
        if not tasks:
            self.say(nothing_to_run(plan, label, total))
            return outcomes, failed
        progress = progress_bars(self.show_progress)
        bar: list = [None]
        last = [0.0]

        def on_progress(docs: int, records: int, doing: str) -> None:
            now = time.monotonic()
            if bar[0] is not None and now - last[0] > 0.2:  # a bar update per batch would cost more than it shows
                last[0] = now
                progress.update(bar[0], completed=records, info=f"{records:,} read, {docs:,} kept; {doing}")

        worker = _Worker(plan, readers, os.getcwd(), node="", on_progress=on_progress if self.show_progress else None)
        pending = deque(tasks)
        attempts: dict[int, int] = {}
        docs_total = 0
        with progress:
            overall = progress.add_task(f"segment {plan.segment}: {label}", total=total,
                                        completed=total - len(tasks), info="")
            while pending:
                task = pending.popleft()
                bar[0] = progress.add_task(f"  {task_id_for(task, plan.segment)}", total=None, info="starting")
                try:
                    outcome = worker.run(task)
                except Exception as err:  # noqa: BLE001 - as a Ray task error: retried, then reported
                    attempts[task.index] = attempts.get(task.index, 0) + 1
                    if attempts[task.index] <= max_retries:
                        pending.append(task)
                    else:
                        failed[task_id_for(task, plan.segment)] = _short_error(err)
                        progress.advance(overall)
                    continue
                finally:
                    progress.remove_task(bar[0])
                    bar[0] = None
                outcomes.append(outcome)
                docs_total += outcome.docs
                on_done(outcome, task)
                progress.update(overall, advance=1, info=f"{docs_total:,} docs kept")
        return outcomes, failed


class _Done:
    """A finished call of ``InProcessSteps``: its result or what it raised."""

    __slots__ = ("result", "error")

    def __init__(self, result=None, error: BaseException | None = None):
        self.result, self.error = result, error


class InProcessSteps:
    """``curate.pool.step_runner`` without Ray: ``submit`` runs the call at once, here."""

    size = 1

    def submit(self, fn: Callable, *args) -> _Done:
        try:
            return _Done(fn(*args))
        except Exception as err:  # noqa: BLE001 - raised again by get(), where a Ray task's error would be
            return _Done(error=err)

    def wait(self, handles: list) -> list:
        return list(handles)

    def get(self, handle: _Done):
        if handle.error is not None:
            raise handle.error
        return handle.result

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass
