"""A pool of Ray actors that run tasks, with retries, and progress bars on the driver; and the choice
between it and running the tasks in the curate process itself (``curate.local``).

Actors (not plain Ray tasks) so that each worker loads its models once (the
fastText language-ID model, word lists ...) and then runs many tasks; per-task
overhead is one remote call. Each actor answers ``progress()`` from a second
thread while it works, which feeds the per-task progress bars.

Ray costs seconds before the first task runs and after the last one (start-up, worker processes, shut
down: 2 to 5 s on 2 shared cores, with the load). A small run spends most of its time there, so
``open_pool`` runs it in process instead (``run.executor``): the same ``_Worker`` class, the same
``run_task``, one task after another, nothing started. Global stages ask ``step_runner`` for their own
steps' tasks, which follows the same choice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

from curate.execute import TaskOutcome, TaskPlan, run_task, task_id_for
from curate.params import ConfigError
from curate.readers import Reader, Task

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

log = logging.getLogger("curate")
_console: "Console | None" = None


def console() -> "Console":
    """Where progress and the pool's lines go (stderr). Made on first use: the worker processes import
    this module to run tasks and never print, and rich is 0.05 s of their start-up."""
    global _console
    if _console is None:
        from rich.console import Console  # noqa: PLC0415

        _console = Console(stderr=True)
    return _console


class ClusterUnavailable(RuntimeError):
    """The Ray cluster named by --address / RAY_ADDRESS cannot be reached."""


#: The watcher of the embedded Ray this process started (see curate/raywatch.py), with its session folder.
_watch: tuple[subprocess.Popen, str] | None = None


def start_ray(workers: int | None, address: str | None) -> bool:
    """Connect to ``address`` or start an embedded local Ray; returns True when we started it.

    An embedded Ray gets a watcher process (``curate.raywatch``) that, once this process has exited
    (normally or killed), ends the Ray processes still running and removes Ray's session folder.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    with _neutral_working_directory():
        if address:
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as err:
                hint = "" if os.environ.get("RAY_AUTH_MODE") else (
                    " Clusters started with `ray start` use token authentication: a client connecting to an "
                    "explicit address must set RAY_AUTH_MODE=token (the token comes from RAY_AUTH_TOKEN or "
                    "~/.ray/auth_token).")
                raise ClusterUnavailable(f"cannot connect to the Ray cluster at {address}: {err}.{hint}") from None
        else:  # address="local": never join a stray `ray start` cluster of this machine
            watcher = _start_watch()
            try:
                with _only_what_a_batch_run_uses():
                    ray.init(address="local", num_cpus=workers or os.cpu_count() or 1,
                             _system_config=_BATCH_SYSTEM_CONFIG, **kwargs)
            except BaseException:
                _release_port()
                raise
            _name_session(watcher)
    return True


#: Ray settings of an embedded Ray (its ``_system_config``). Task events feed the dashboard's and the state
#: API's task lists, which a batch run does not use (the dashboard is off, curate never asks). Without them
#: ``ray.shutdown`` took 0.07-0.13 s in 5 shutdowns of 7, against 0.32 s in all 6 with them (the driver's
#: core worker waiting to flush them, it seems; a 0.25 s wait is left in the other 2).
_BATCH_SYSTEM_CONFIG = {"task_events_report_interval_ms": 0}

#: Head processes of an embedded Ray that a batch run never uses (Ray 2.60 ``ray._private.node.Node``).
_UNUSED_HEAD_PROCESSES = ("start_api_server", "start_monitor", "start_log_monitor")

#: The top-level packages that ``ray.dashboard.optional_deps`` imports: with one of them missing, Ray's
#: dashboard agent runs ``--minimal`` (a plain ``pip install ray``, as curate installs it).
_DASHBOARD_PACKAGES = ("aiohttp", "aiohttp_cors", "grpc", "opencensus", "opentelemetry", "prometheus_client",
                       "pydantic")

#: What a ``--minimal`` dashboard agent reports as its ports (it opens none): metrics agent, metrics export,
#: HTTP listen port. Given to the raylet on its command line, so that it need not wait for the agent to say so.
_MINIMAL_AGENT_PORTS = ("--metrics_agent_port=-1", "--metrics_export_port=-1", "--dashboard_agent_listen_port=-1")


@contextlib.contextmanager
def _only_what_a_batch_run_uses():
    """Start an embedded Ray without the head processes a batch run never uses, and without waiting on
    what it does not need to wait for.

    ``include_dashboard=False`` still starts a minimal dashboard head (usage statistics, the job API),
    and ``ray.init`` waits until it has published its address; it also starts the autoscaler monitor
    (a fixed-size local Ray never scales) and the log monitor (which streams workers' output to the
    driver, off here: ``log_to_driver=False``). On 2 shared cores at load 3.5 to 5.4 these cost
    ``ray.init`` 6.5-8.4 s against 2.1-4.0 s without them, Ray's processes 3.7-3.8 CPU-s against
    2.0-2.2, and ``ray.shutdown`` 1.3-1.5 s against 0.3-0.4 (the monitor waits out its SIGTERM grace).
    What runs stays whole: GCS, raylet (with its agents and the OOM killer), workers, object store,
    token authentication. Ray supports a head whose dashboard did not start (its address is then
    None); no public API skips these, so the three ``Node`` methods are replaced during ``ray.init``
    only, and with another Ray whose ``Node`` lacks them, nothing is changed.

    Three waits go too (``_fewer_waits``): the driver's check whether the dashboard's optional packages
    are installed, and the raylet's waits for its two agents' ports.
    """
    try:
        from ray._private.node import Node  # noqa: PLC0415 - no public API
    except ImportError:
        yield
        return
    saved = {name: Node.__dict__.get(name) for name in _UNUSED_HEAD_PROCESSES}
    if not all(callable(method) for method in saved.values()):
        yield
        return
    for name in _UNUSED_HEAD_PROCESSES:
        setattr(Node, name, lambda self, *args, **kwargs: None)
    try:
        with _fewer_waits(Node):
            yield
    finally:
        for name, method in saved.items():
            setattr(Node, name, method)


@contextlib.contextmanager
def _fewer_waits(Node):
    """Three waits of ``ray.init`` that a batch run gains nothing from, and its two agents out of the way
    (Ray 2.60; another Ray: unchanged). Measured on 2 shared cores, alternating with the code before
    (``curate run --stages length`` through Ray, 8 rounds): Ray's start 1.0-1.1 s against 2.0-2.1 s at
    load 3, 1.8-2.3 s against 3.7-4.4 s at load 5; ``benchmarks/fixed_cost.py``: 0.72 s against 1.79 s
    (load 2-3). Only where the dashboard agent runs ``--minimal`` (with ``ray[default]`` installed the
    raylet waits for the dashboard agent's ports as before, and no agent is niced).

    1. Whether the dashboard agent runs ``--minimal`` is decided in the driver by importing
       ``ray.dashboard.optional_deps`` (aiohttp, grpc, opentelemetry ...): 0.25-0.3 s on the driver's
       critical path, to learn that ``aiohttp_cors`` is not installed. Where one of those packages is not
       installed at all (``importlib.util.find_spec``), the answer is the same ImportError without the
       imports; where all are there, Ray's own check runs.
    2. The raylet registers its node only once the dashboard agent has written its ports to files, so
       ``ray.init`` waits for that Python process to import Ray and try every dashboard module (0.9-1.4 s
       on 2 cores). A ``--minimal`` agent opens none of them and always reports -1 for all three; the
       raylet is given those -1s on its command line (its own flags: it waits only for a port it was
       given as 0). The node's record in the GCS is the same as before, the agent still starts and runs.
    3. It also waits for the runtime-env agent's port (the agent that sets up workers' runtime
       environments). That port is chosen here instead (``Node.start_raylet`` reads it from the node's
       parameters, as from ``ray start --runtime-env-agent-port``), and held: this process keeps a socket
       bound to it (SO_REUSEADDR, never listening) until ``stop_ray``, so that no other program is given
       it meanwhile, while the agent, which binds it with SO_REUSEADDR as well, can.

    With nothing waiting for them, the two agents would still take their CPU (0.4-0.5 CPU-s each, to
    import Ray and, for the dashboard agent, to try every dashboard module and load none) from the
    driver and the first workers while those start, on 2 cores. So they run at the lowest CPU priority
    (``nice -n 19`` before their commands): they start when a core is free. A batch run uses the
    runtime-env agent only for a stage with a ``runtime_env`` of its own, which then waits for it.
    """
    try:
        import ray._private.services as services  # noqa: PLC0415 - no public API
        import ray._private.utils as ray_utils  # noqa: PLC0415
    except ImportError:
        yield
        return
    check = getattr(ray_utils, "get_dashboard_dependency_error", None)
    start_process = getattr(services, "start_ray_process", None)
    raylet = getattr(services, "RAYLET_EXECUTABLE", None)
    start_raylet = Node.__dict__.get("start_raylet")
    if not (callable(check) and callable(start_process) and raylet and callable(start_raylet)):
        yield
        return

    def dependency_error():
        return _dashboard_dependency_error(check)

    def start_ray_process(command, *args, **kwargs):
        if command and command[0] == raylet and dependency_error() is not None:
            command = [*command, *_MINIMAL_AGENT_PORTS]  # gflags: the last occurrence of a flag wins
            command = [_niced(arg) for arg in command]
        return start_process(command, *args, **kwargs)

    def start_raylet_on_a_held_port(self, *args, **kwargs):
        global _agent_port
        params = getattr(self, "_ray_params", None)
        if params is not None and not getattr(params, "runtime_env_agent_port", None) and _agent_port is None:
            _agent_port = _hold_a_port()
            if _agent_port is not None:
                params.runtime_env_agent_port = _agent_port.getsockname()[1]
        return start_raylet(self, *args, **kwargs)

    ray_utils.get_dashboard_dependency_error = dependency_error
    services.start_ray_process = start_ray_process
    Node.start_raylet = start_raylet_on_a_held_port
    try:
        yield
    finally:
        ray_utils.get_dashboard_dependency_error = check
        services.start_ray_process = start_process
        Node.start_raylet = start_raylet


def _dashboard_dependency_error(check: Callable[[], ImportError | None]) -> ImportError | None:
    """What Ray's ``get_dashboard_dependency_error`` (``check``) returns, without importing the packages
    when one of them is not installed at all."""
    import importlib.util  # noqa: PLC0415

    for name in _DASHBOARD_PACKAGES:
        if importlib.util.find_spec(name) is None:
            return ModuleNotFoundError(f"No module named {name!r}", name=name)
    return check()


#: The raylet's flags that name its two agents' commands (``_niced``).
_AGENT_COMMANDS = ("--dashboard_agent_command=", "--runtime_env_agent_command=")


def _niced(arg: str) -> str:
    """An agent's command (a raylet flag of ``_AGENT_COMMANDS``) run at the lowest CPU priority."""
    nice = shutil.which("nice")
    for flag in _AGENT_COMMANDS:
        if arg.startswith(flag) and nice is not None:
            return flag + subprocess.list2cmdline([nice, "-n", "19"]) + " " + arg[len(flag):]
    return arg


#: The socket that holds the runtime-env agent's port of the embedded Ray (``_fewer_waits``), till ``stop_ray``.
_agent_port: socket.socket | None = None


def _hold_a_port() -> socket.socket | None:
    """A free TCP port, bound and not listening, that a program setting SO_REUSEADDR may bind as well."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", 0))
        return sock
    except OSError:  # Ray chooses the port, as it does by default
        return None


def _release_port() -> None:
    global _agent_port
    if _agent_port is not None:
        _agent_port.close()
        _agent_port = None


def _start_watch() -> subprocess.Popen | None:
    """The watcher starts before Ray, so that a driver killed inside ``ray.init`` is cleaned up too."""
    global _watch
    try:
        from ray._common.utils import get_default_ray_temp_dir  # noqa: PLC0415 - no public API

        root = get_default_ray_temp_dir()
    except Exception:  # noqa: BLE001 - Ray's own default
        root = os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), "ray")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raywatch.py")
    try:
        watcher = subprocess.Popen([sys.executable, "-I", script, root, str(os.getpid())], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:  # without it, only the clean-up after the driver is gone is lost
        return None
    _watch = (watcher, "")
    return watcher


def _name_session(watcher: subprocess.Popen | None) -> None:
    global _watch
    if watcher is None:
        return
    try:
        import ray

        session = ray._private.worker._global_node.get_session_dir_path()  # noqa: SLF001 - no public API
        watcher.stdin.write(session.encode() + b"\n")
        watcher.stdin.flush()
        _watch = (watcher, session)
    except Exception:  # noqa: BLE001 - the watcher still finds the folder by the driver's pid
        pass


def stop_ray() -> None:
    """Shut down the Ray this process started, and remove its session folder now (not at exit)."""
    global _watch
    import ray

    _end_monitor()
    ray.shutdown()
    _release_port()
    if _watch is not None:
        watcher, _ = _watch
        _watch = None
        watcher.stdin.close()  # the watcher wakes, finds no Ray process left, removes the folder
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def _end_monitor() -> None:
    """Kill Ray's autoscaler monitor before ``ray.shutdown``.

    ``ray.shutdown`` sends each of its processes SIGTERM and waits up to a second for it to exit; the
    monitor (``monitor.py``, which scales clusters, nothing an embedded Ray of fixed size uses) waits
    the whole second before it is killed: 1.0 of the 1.45 s the shutdown took (Ray 2.60; the raylet,
    GCS, dashboard and log monitor take 0.03 to 0.06 s each). Killed first, Ray finds it gone. It holds
    nothing of the run's. No public API names it; with another Ray, nothing is done.
    """
    try:
        import ray
        from ray._private import ray_constants

        node = ray._private.worker._global_node  # noqa: SLF001 - no public API
        for info in (node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []) if node is not None else []):
            if info.process.poll() is None:
                info.process.kill()
                info.process.wait(timeout=5)
    except Exception:  # noqa: BLE001 - Ray's own shutdown still ends it
        pass


@contextlib.contextmanager
def _neutral_working_directory():
    """Start Ray from an empty directory.

    Ray puts the driver's working directory first on every worker's sys.path.
    Run from a curate checkout, that directory holds the source folder
    ``curate/`` (without ``stages/`` inside: the wheel maps it there), which
    would shadow the installed package in the workers. All paths are absolute
    by the time Ray starts, so nothing else depends on the working directory.
    """
    previous = os.getcwd()
    empty = os.path.join(tempfile.gettempdir(), f"curate-ray-{os.getuid()}")
    os.makedirs(empty, exist_ok=True)  # kept: workers may start in it
    os.chdir(empty)
    try:
        yield
    finally:
        os.chdir(previous)


class _Worker:
    """Runs tasks of one pipeline segment; models are loaded on the first task."""

    def __init__(self, plan: TaskPlan, readers: dict[str, Reader] | None, cwd: str, *,
                 node: str | None = None, on_progress: Callable[[int, int, str], None] | None = None):
        # relative paths in stage parameters (models, word lists) mean what they meant to the driver;
        # imports are unaffected (Ray fixed sys.path at start-up, see _neutral_working_directory)
        os.chdir(cwd)
        self.plan, self.readers = plan, readers
        self.node = node                # None: ask Ray which node this is (an actor)
        self.on_progress = on_progress  # in process: the driver's progress bar, updated as the task goes
        self.loaded_decisions = False
        self.current: dict[str, tuple[int, int, str]] = {}
        self.lock = threading.Lock()

    def run(self, task: Task) -> TaskOutcome:
        plan = self.plan
        if plan.global_stage is not None and not self.loaded_decisions:
            plan.global_stage.load_decisions(plan.global_workdir)
            self.loaded_decisions = True
        reader = self.readers[task.source] if self.readers is not None else None

        def report(task_id: str, docs: int, records: int, doing: str) -> None:
            with self.lock:
                self.current = {task_id: (docs, records, doing)}
            if self.on_progress is not None:
                self.on_progress(docs, records, doing)

        try:
            outcome = run_task(task, plan, reader, progress=report)
            outcome.node = _node_id() if self.node is None else self.node
            return outcome
        finally:
            with self.lock:
                self.current = {}

    def progress(self) -> dict[str, tuple[int, int, str]]:
        with self.lock:
            return dict(self.current)

    def ready(self) -> bool:
        """Answered once the actor runs: only then does the pool give it a task."""
        return True


#: How long a pool with tasks left but no live worker waits for a new one to start before it gives up
#: on those tasks (counted failed: a rerun resumes them). Ray keeps trying to place the workers meanwhile.
NO_WORKER_TIMEOUT_S = float(os.environ.get("CURATE_NO_WORKER_TIMEOUT_S", 300))


def progress_bars(show: bool) -> Progress:
    """The progress display of a segment's tasks (one overall bar, one per task in flight)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,  # noqa: PLC0415
                               TimeElapsedColumn)

    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console(), disable=not show,
        transient=False,
    )


def nothing_to_run(plan: TaskPlan, label: str, total: int) -> str:
    said = f"all {total} tasks already done" if total else "no documents reached it"
    return f"segment {plan.segment} ({label}): {said}"


class WorkerPool:
    """Runs a segment's tasks on Ray actors (``executor = "ray"``); ``curate.local.LocalPool`` is its
    in-process twin with the same methods."""

    executor = "ray"

    def __init__(self, workers: int | None, address: str | None, *, show_progress: bool = True):
        self.requested = workers
        self.address = address
        self.show_progress = show_progress and sys.stderr.isatty()
        self.size = workers or 1
        self.start_seconds = 0.0
        self.stop_seconds = 0.0
        self.why = ""  # why this executor (open_pool), for the log line and the manifest
        self._started_ray = False

    def __enter__(self) -> "WorkerPool":
        t0 = time.perf_counter()
        import ray  # a second of it, on first use: part of what starting Ray costs

        self._started_ray = start_ray(self.requested, self.address)
        self.start_seconds = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.size = max(1, min(self.requested or cpus, cpus))
        return self

    def __exit__(self, *exc) -> None:
        t0 = time.perf_counter()
        if self._started_ray:
            stop_ray()
        self.stop_seconds = time.perf_counter() - t0

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
        """Run ``tasks``; returns outcomes and {task_id: error} for tasks that failed every retry."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        outcomes: list[TaskOutcome] = []
        failed: dict[str, str] = {}
        if not tasks:
            self.say(nothing_to_run(plan, label, total))
            return outcomes, failed
        remote_worker = ray.remote(num_cpus=1, max_concurrency=2)(_Worker)
        n_actors = min(self.size, len(tasks))
        plan_ref = ray.put(plan)
        readers_ref = ray.put(readers)
        cwd = os.getcwd()
        actors = [remote_worker.remote(plan_ref, readers_ref, cwd) for _ in range(n_actors)]
        # An actor gets tasks only once it answers ``ready``: a replacement for a worker lost with its
        # node may never be placed (the CPUs left are held by the other actors), and a task handed to
        # it would wait forever. Until then it only waits in ``starting``; the live actors take the work.
        starting = {actor.ready.remote(): actor for actor in actors}
        waiting_since = time.monotonic()
        idle: list = []
        pending = deque(tasks)
        attempts: dict[int, int] = {}
        inflight: dict = {}
        progress = progress_bars(self.show_progress)
        done_before = total - len(tasks)
        with progress:
            overall = progress.add_task(f"segment {plan.segment}: {label}", total=total, completed=done_before, info="")
            bars: dict = {}
            docs_total = 0
            while pending or inflight:
                while idle and pending:
                    actor, task = idle.pop(), pending.popleft()
                    ref = actor.run.remote(task)
                    inflight[ref] = (actor, task)
                    bars[ref] = progress.add_task(f"  {task_id_for(task, plan.segment)}", total=None, info="starting")
                ready, _ = ray.wait(list(inflight) + list(starting), num_returns=1, timeout=0.5)
                for ref in ready:
                    if ref in starting:
                        actor = starting.pop(ref)
                        try:
                            ray.get(ref)
                            idle.append(actor)
                        except (RayActorError, WorkerCrashedError):
                            pass  # died before it ran anything: the others (or a later node) do the work
                        continue
                    actor, task = inflight.pop(ref)
                    progress.remove_task(bars.pop(ref))
                    try:
                        outcome = ray.get(ref)
                    except (RayActorError, WorkerCrashedError, RayTaskError) as err:
                        dead = not isinstance(err, RayTaskError)
                        if not dead:
                            idle.append(actor)
                        else:
                            # the worker process died (OOM, segfault) or its node went: a replacement
                            # starts where Ray finds a CPU; it takes tasks once it is up (see ``starting``)
                            actor = remote_worker.remote(plan_ref, readers_ref, cwd)
                            actors.append(actor)
                            starting[actor.ready.remote()] = actor
                        attempts[task.index] = attempts.get(task.index, 0) + 1
                        if attempts[task.index] <= max_retries:
                            pending.append(task)
                        else:
                            failed[task_id_for(task, plan.segment)] = _short_error(err)
                            progress.advance(overall)
                        continue
                    idle.append(actor)
                    outcomes.append(outcome)
                    docs_total += outcome.docs
                    on_done(outcome, task)
                    progress.update(overall, advance=1, info=f"{docs_total:,} docs kept")
                if idle or inflight or not starting:
                    waiting_since = time.monotonic()
                elif pending and time.monotonic() - waiting_since > NO_WORKER_TIMEOUT_S:
                    for task in pending:  # every worker is gone and none can be started
                        failed[task_id_for(task, plan.segment)] = (
                            f"no worker could be started for {NO_WORKER_TIMEOUT_S:.0f} s: the cluster has no free CPU")
                        progress.advance(overall)
                    pending.clear()
                    break
                if self.show_progress and inflight:
                    self._refresh_bars(progress, inflight, bars)
        for actor in actors:
            ray.kill(actor)
        return outcomes, failed

    @staticmethod
    def _refresh_bars(progress: Progress, inflight: dict, bars: dict) -> None:
        import ray

        refs = {actor.progress.remote(): ref for ref, (actor, _) in inflight.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.2)
        for probe in ready:
            try:
                current = ray.get(probe)
            except Exception:  # noqa: BLE001 - a dying actor: its task result will tell
                continue
            for _, (docs, records, doing) in current.items():
                bar = bars.get(refs[probe])
                if bar is not None:
                    progress.update(bar, completed=records, info=f"{records:,} read, {docs:,} kept; {doing}")


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _short_error(err: Exception) -> str:
    text = str(err).strip().splitlines()
    tail = [line for line in text if line.strip()][-1:] or [type(err).__name__]
    return f"{type(err).__name__}: {tail[0][:500]}"


# ---------------------------------------------------------------- which executor


RAY, IN_PROCESS = "ray", "in-process"


def choose_executor(setting: str, *, workers: int | None, address: str | None, work_mb: float,
                    limit_mb: float, file: str | None = None) -> tuple[str, str]:
    """(executor, why in words) for a run: ``setting`` is ``run.executor``; ``work_mb`` the input's MB
    times its per-document stages, against ``limit_mb`` (``run.in_process_mb``).

    A cluster address, or a Ray this process is already connected to (a test, a notebook), means Ray:
    its workers are there already. ``--workers 1`` means in process: one worker is the driver itself.
    """
    check_executor(setting, address, file)
    if address:
        return RAY, f"cluster {address}"
    if setting == RAY:
        return RAY, "run.executor=ray"
    if setting == IN_PROCESS:
        return IN_PROCESS, "run.executor=in-process"
    if _ray_connected():
        return RAY, "this process is already connected to Ray"
    if workers == 1 or (workers is None and (os.cpu_count() or 1) == 1):
        return IN_PROCESS, "one worker (--set run.executor=ray to use Ray anyway)"
    if work_mb <= limit_mb:
        return IN_PROCESS, (f"small run: {work_mb:.3g} MB of input x stages <= run.in_process_mb={limit_mb:g} "
                            "(--set run.executor=ray to use Ray anyway)")
    return RAY, f"{work_mb:.3g} MB of input x stages > run.in_process_mb={limit_mb:g}"


def check_executor(setting: str, address: str | None, file: str | None = None) -> None:
    """Before anything is written: a setting that cannot hold for this run is a usage error."""
    if address and setting == IN_PROCESS:
        raise ConfigError("in-process cannot run on a cluster (--address / RAY_ADDRESS); use auto or ray, "
                          "or drop the address", file=file or "command line", key="run.executor")


def open_pool(setting: str, workers: int | None, address: str | None, *, work_mb: float, limit_mb: float,
              file: str | None = None, show_progress: bool = True):
    """The pool a run uses: a ``WorkerPool`` (Ray) or a ``curate.local.LocalPool``; enter it with ``with``."""
    executor, why = choose_executor(setting, workers=workers, address=address, work_mb=work_mb, limit_mb=limit_mb,
                                    file=file)
    if executor == IN_PROCESS:
        from curate.local import LocalPool

        pool = LocalPool(workers, show_progress=show_progress)
    else:
        pool = WorkerPool(workers, address, show_progress=show_progress)
    pool.why = why
    return pool


def _ray_connected() -> bool:
    """Without importing Ray (a second of start-up) when nothing imported it yet."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


# ---------------------------------------------------------------- a global stage's own steps


def step_runner(workers: int):
    """What a global stage runs its steps' tasks with: Ray when this process is connected to Ray (the
    runner's pool started it, or a cluster), else in this process, one task after another.

    The returned object has ``submit(fn, *args) -> handle``, ``wait(handles) -> [finished handles]`` (at
    least one), ``get(handle) -> fn's result`` (raises what ``fn`` raised) and ``close()``, which ends
    its worker processes: call it when the stage's step is done, so that their memory is free for the
    pass that follows. ``workers`` bounds the tasks a caller should keep in flight.
    """
    if _ray_connected():
        return RaySteps(workers)
    from curate.local import InProcessSteps

    return InProcessSteps()


class _StepWorker:
    """One process of a global stage's steps; killed at the end of the stage (its memory goes with it)."""

    def call(self, fn: Callable, *args):
        return fn(*args)

    def ready(self) -> bool:
        return True


class RaySteps:
    """A global stage's tasks on actors of its own (not plain Ray tasks): plain tasks leave their
    worker processes idle but alive once the step is done, holding what numpy and Arrow allocated
    (335 MB each after a dedup step), while the apply pass starts its own; these actors end in ``close``.

    Calls are queued here and handed only to actors that answered ``ready``, as ``WorkerPool`` does: on
    a cluster that lost a node, an actor for a CPU that is gone may never be placed, and a call given
    to it would wait forever. A call whose actor died is retried (``max_retries``) on another one, and a
    replacement actor is started; it takes calls once it is up.
    """

    def __init__(self, workers: int, max_retries: int = 2):
        import ray

        self.ray = ray
        self.size = max(1, int(workers))
        self.max_retries = max_retries
        self.remote_class = ray.remote(num_cpus=1, max_restarts=0)(_StepWorker)
        self.actors: list = []
        self.starting: dict = {}   # ready ref -> actor
        self.idle: list = []
        self.inflight: dict = {}   # ref -> (actor, handle)
        self.queue: deque = deque()
        self.calls: dict[int, tuple] = {}      # handle -> (fn, args)
        self.tries: dict[int, int] = {}
        self.results: dict[int, tuple] = {}    # handle -> (ok, value or error)
        self._next = 0

    def _start_actor(self) -> None:
        actor = self.remote_class.remote()
        self.actors.append(actor)
        self.starting[actor.ready.remote()] = actor

    def submit(self, fn: Callable, *args) -> int:
        handle = self._next
        self._next += 1
        self.calls[handle] = (fn, args)
        self.queue.append(handle)
        if len(self.actors) < self.size and len(self.starting) + len(self.idle) < len(self.queue):
            self._start_actor()
        return handle

    def _dispatch(self) -> None:
        while self.idle and self.queue:
            actor, handle = self.idle.pop(), self.queue.popleft()
            fn, args = self.calls[handle]
            self.inflight[actor.call.remote(fn, *args)] = (actor, handle)

    def wait(self, handles: list) -> list:
        from ray.exceptions import RayActorError, WorkerCrashedError

        waiting_since = time.monotonic()
        while True:
            done = [h for h in handles if h in self.results]
            if done:
                return done
            self._dispatch()
            ready, _ = self.ray.wait(list(self.inflight) + list(self.starting), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in self.starting:
                    actor = self.starting.pop(ref)
                    try:
                        self.ray.get(ref)
                        self.idle.append(actor)
                    except (RayActorError, WorkerCrashedError):
                        pass  # never came up: the others (or a later replacement) do the work
                    continue
                actor, handle = self.inflight.pop(ref)
                try:
                    self.results[handle] = (True, self.ray.get(ref))
                    self.idle.append(actor)
                except (RayActorError, WorkerCrashedError) as err:  # its process or its node is gone
                    self.tries[handle] = self.tries.get(handle, 0) + 1
                    if self.tries[handle] > self.max_retries:
                        self.results[handle] = (False, err)
                    else:
                        self.queue.appendleft(handle)
                    self._start_actor()
                except Exception as err:  # noqa: BLE001 - what fn raised: get() raises it
                    self.results[handle] = (False, err)
                    self.idle.append(actor)
            if self.idle or self.inflight or not self.starting:
                waiting_since = time.monotonic()
            elif time.monotonic() - waiting_since > NO_WORKER_TIMEOUT_S:
                raise RuntimeError(f"no worker could be started for {NO_WORKER_TIMEOUT_S:.0f} s: "
                                   "the cluster has no free CPU")

    def get(self, handle: int):
        ok, value = self.results.pop(handle)
        self.calls.pop(handle, None)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors, self.idle, self.starting, self.inflight = [], [], {}, {}
        self.queue.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
