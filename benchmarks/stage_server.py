"""Stages of the benchmarks' caches (`StageCache`) forked from one process that has already imported avvp.

A stage is one of avvp's command lines (`avvp-pretrain ...`, `avvp-finetune ...`). Run as a fresh process, each
spends seconds importing PyTorch, Accelerate and transformers before doing anything (7 s for `avvp-pretrain` on
one of the project's CPU cores, where a tiny preset's work is under one): a tiny table's dozens of stages spent
most of their time importing. The stage server imports a command line the first time a stage needs it (with what its
runs import once they run: `RUN_IMPORTS`), then forks a child per stage: the child is the command line as a fresh
process would run it (the same environment, since the server starts with the one every stage of the run gets; its
output into the stage's log; stdin from /dev/null; exit status and signals as a process's), minus the imports.

The server is started with the stage environment, so everything read from the environment at import time
(OMP_NUM_THREADS by the OpenMP runtime, the Rich console, transformers' settings) is what the fresh process would
have read; it imports but computes nothing, so no thread pool exists when it forks. `StageCache` uses it on Linux
where no GPU is visible (a GPU stage gets its own CUDA_VISIBLE_DEVICES, which must be set before CUDA is
initialised, and its import time is small beside its work), for avvp's own console scripts only;
AVVP_STAGE_PROCESSES=fresh turns it off (`tests/test_stage_server.py` checks that both give the same bytes).

Protocol, one JSON object per line: the parent writes {"id", "argv", "log"}; the server answers {"id", "pid"}
when a stage started and {"id", "exit"} when it ended (the exit status as `subprocess` gives it: negative for a
signal). End of input: the server kills what still runs and exits.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

from avvp.commands.entry import MODULES, run_script
from avvp.errors import AvvpError

SWITCH = "AVVP_STAGE_PROCESSES"
"""`fresh`: every stage a fresh process (no server); unset or `server`: the server where it applies."""


def server_applies(gpus: list[str]) -> bool:
    """Whether stages may be forked from a server here: Linux (fork after import is safe there for these
    libraries), no GPU handed out per stage, and not turned off."""
    choice = os.environ.get(SWITCH, "server")
    if choice not in ("server", "fresh"):
        raise AvvpError(f"{SWITCH}={choice!r}: expected server or fresh")
    return choice == "server" and sys.platform == "linux" and not gpus


def served_script(argv: list[str]) -> str | None:
    """The console script a command runs, where the server can run it: avvp's own, from this environment."""
    name = Path(argv[0]).name
    if name not in MODULES or Path(argv[0]).parent != Path(sys.executable).parent:
        return None
    return name


class StageServer:
    """The parent's side: `run(argv, log)` blocks until that stage ends and returns its exit status; thread-safe
    (with `--jobs N`, N threads each wait for their own stage). A KeyboardInterrupt (or any exception) while
    waiting kills the stage, as `subprocess.run` does."""

    def __init__(self, env: dict[str, str], error_log: Path):
        self.env = dict(env)
        self._error_log = Path(error_log).absolute()  # named and removed from any folder the caller is in later
        with open(error_log, "w") as errors:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from avvp.benchmarks.stage_server import serve; serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                env=env,
            )
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._next_id = 0
        self._pids: dict[int, int] = {}
        self._exits: dict[int, int] = {}
        self._changed = threading.Condition(self._state_lock)
        self._ended = False
        self._reader = threading.Thread(target=self._read, name="stage-server-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            message = json.loads(line)
            with self._changed:
                if "pid" in message:
                    self._pids[message["id"]] = message["pid"]
                else:
                    self._exits[message["id"]] = message["exit"]
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _wait_for(self, ready) -> None:
        with self._changed:
            while not ready():
                if self._ended:
                    self._process.wait()
                    tail = self._error_log.read_text(errors="replace").strip().splitlines()[-15:]
                    raise AvvpError(
                        f"the stage server ended (exit {self._process.returncode}); log {self._error_log}:\n"
                        + "\n".join(tail)
                    )
                self._changed.wait(timeout=1.0)  # woken by the reader; the timeout lets a signal in on any platform

    def run(self, argv: list[str], log: Path) -> int:
        with self._state_lock:
            request = self._next_id
            self._next_id += 1
        try:
            with self._write_lock:
                message = {"id": request, "argv": argv, "log": str(log), "cwd": os.getcwd()}
                self._process.stdin.write(json.dumps(message).encode() + b"\n")
                self._process.stdin.flush()
        except OSError:  # the server is gone: say so, with its log
            self._wait_for(lambda: False)
        try:
            self._wait_for(lambda: request in self._exits)
        except BaseException:
            self._kill(request)
            raise
        with self._state_lock:
            self._pids.pop(request, None)
            return self._exits.pop(request)

    def _kill(self, request: int) -> None:
        """Kill a stage that is (or is about to be) running, and wait until the server has reaped it."""
        try:
            self._wait_for(lambda: request in self._pids)
            with self._state_lock:
                pid = self._pids.get(request) if request not in self._exits else None
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            self._wait_for(lambda: request in self._exits)
        except (AvvpError, ProcessLookupError):
            pass  # the server or the stage is gone already
        with self._state_lock:
            self._pids.pop(request, None)
            self._exits.pop(request, None)

    def alive(self) -> bool:
        return self._process.poll() is None and not self._ended

    def close(self) -> None:
        """End the server (what still runs is killed) and wait for it."""
        if self._process.poll() is None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
            self._process.wait()
        self._reader.join()
        self._process.stdout.close()
        if self._error_log.exists() and self._error_log.stat().st_size == 0:
            self._error_log.unlink()


_shared: StageServer | None = None
_shared_lock = threading.Lock()


def shared_server(env: dict[str, str], error_log: Path) -> StageServer:
    """This process's stage server for stages run with `env`, started on first use and kept for the process's life:
    every cache of the process (the suite's tables, an API user's several runs) forks its stages from it. It has only
    imported, never computed, so a server that served one run serves the next as a new one would. One started with
    another environment, or one that ended, is replaced. `error_log`: where a server started now writes its own
    errors (the log of the cache that started it; removed when the server ends with nothing in it)."""
    global _shared
    with _shared_lock:
        if _shared is not None and (_shared.env != env or not _shared.alive()):
            _shared.close()
            _shared = None
        if _shared is None:
            _shared = StageServer(env, error_log)
        return _shared


def close_shared_server() -> None:
    """End this process's shared stage server, if any (also at the process's exit)."""
    global _shared
    with _shared_lock:
        server, _shared = _shared, None
    if server is not None:
        server.close()


atexit.register(close_shared_server)


def _run_stage(argv: list[str], log: str, cwd: str) -> int:
    """In the forked child: the command line `argv` in the folder `cwd` (the caller's, as a fresh process would
    start in), its output into `log`; returns its exit status."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(cwd)  # before the log is opened: a relative log path is the caller's too
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.close(nothing)
    sys.argv = list(argv)
    try:
        run_script(Path(argv[0]).name)
        return 0
    except SystemExit as exit_info:  # as the interpreter ends a process on SystemExit
        if exit_info.code is None or isinstance(exit_info.code, int):
            return exit_info.code or 0
        print(exit_info.code, file=sys.stderr)
        return 1


def _child(argv: list[str], log: str, cwd: str) -> None:
    code = 1
    try:
        code = _run_stage(argv, log, cwd)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what a process's normal end runs
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


RUN_IMPORTS = {
    "avvp-finetune": ("avvp.finetune.train", "avvp.finetune.evaluate", "torch._dynamo"),
    "avvp-pretrain": ("avvp.pretrain.train", "avvp.pretrain.control", "torch._dynamo"),
    "avvp-groundtruth": ("avvp.grounding.build", "torch", "faiss"),
}
"""Console script -> what its runs import only once they run, beside its command line: the training loop and
evaluation, `torch._dynamo` (which the first torch optimizer imports: 2 s), torch and FAISS for the grounding
labels. Imported by the server with the command line, so that no child spends its time on them."""
OPTION_IMPORTS = {("avvp-finetune", "--encoder"): ("avvp.pretrain", "avvp.finetune.encoder")}
"""(console script, option) -> what a run given that option imports besides (transformers for an encoder): only
where a stage asks for it, so that a table of raw-feature rows never imports transformers."""


def _import_for(argv: list[str]) -> None:
    """Import the command line of the stage `argv` here, and what its run will import (`RUN_IMPORTS`,
    `OPTION_IMPORTS`), once, so that every child forked after it starts with them imported. A failing import is
    left to the child, whose log then shows it as a fresh process's would."""
    script = Path(argv[0]).name
    modules = [MODULES[script], *RUN_IMPORTS.get(script, ())]
    for (wanted, option), names in OPTION_IMPORTS.items():
        if wanted == script and option in argv:
            modules += names
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:
            pass
    sys.stdout.flush()
    sys.stderr.flush()


def _reply(message: dict) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")


def serve() -> None:
    """The server's loop (in the process `StageServer` starts)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the terminal is for the stages and the parent
    running: dict[int, int] = {}  # pid -> request id
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.05 if running else None)
        if readable:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                _import_for(request["argv"])
                pid = os.fork()
                if pid == 0:
                    _child(request["argv"], request["log"], request["cwd"])
                running[pid] = request["id"]
                _reply({"id": request["id"], "pid": pid})
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            _reply({"id": running.pop(pid), "exit": os.waitstatus_to_exitcode(status)})
    for pid in running:  # the parent is gone: nobody waits for these
        os.kill(pid, signal.SIGKILL)
    for pid in running:
        os.waitpid(pid, 0)
