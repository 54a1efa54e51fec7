"""Run cases in forked children under limits, many at a time.

The parent imports graphdsl once and warms it up; each case is an `os.fork()` of it (milliseconds,
where a fresh interpreter costs 0.3 s) that sets its limits (address space, CPU time, file size),
moves into a fresh box, connects stdin to a pipe nobody writes (a terminal where nobody types),
stdout and stderr to files (or to a closed pipe, or to a private full device), and calls
`graphdsl.cli.run(args)` as the console script does. At the end it flushes the standard streams
as the interpreter would at exit (a failed flush is "Exception ignored ..." and status 120).
Cases marked `exec` run `graphdsl` in a fresh interpreter instead, from the same child.

A child still running at the wall limit is a hang: `faulthandler` has by then written where it
was (the location for the finding's signature), and the parent kills its process group (`dot`
included). Peak memory comes from `wait4`.
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .case import DEVICES, Case

OUTPUT_READ_CAP = 8 << 20  # bytes of stdout/stderr the oracle looks at


@dataclass
class Limits:
    time_s: float = 5.0  # wall clock: more is a hang
    memory_mb: int = 1024  # address space (RLIMIT_AS): more is a memory blow-up
    file_mb: int = 64  # any file the child writes, stdout and stderr included (RLIMIT_FSIZE)


@dataclass
class Result:
    case: Case
    status: int | None = None  # exit status, or None when killed by a signal
    signal: int | None = None
    timed_out: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system time of the child (and what it waited for)
    max_rss: int = 0  # bytes
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_size: int = 0
    stderr_size: int = 0
    hang_dump: str = ""  # faulthandler's stacks at the wall limit
    exception: dict | None = None  # {"type", "message", "frames": ["graphdsl/x.py:func", ...]}
    rules: list[str] = field(default_factory=list)  # grammar rules in the main spec's parse tree
    before: dict = field(default_factory=dict)  # the box before and after: path -> entry
    after: dict = field(default_factory=dict)
    written: dict[str, bytes] = field(default_factory=dict)  # new or changed .py/.dot files (for the oracle)


def default_entry(args: list[str]) -> None:
    """What a child runs: the `graphdsl` console script (`graphdsl.cli:run`), in process."""
    from graphdsl.cli import run

    run(args)


def warm_up() -> None:
    """Load what every case would load anyway (the parser, the operator registry, plugins, the table of
    hidden characters), once in the parent, so that children start warm."""
    from graphdsl import text
    from graphdsl.cli import main

    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "warm.cnn"
        spec.write_text("network warm { input 3x8x8 conv(4, 3, pad=1) bn relu avgpool(global) flatten linear(2) }\n")
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = io.StringIO()
        try:
            for args in (["check", str(spec)], ["summary", str(spec)], ["compile", str(spec), "-o", "-"],
                         ["render", str(spec), "-o", "-"], ["check", str(spec) + ".missing"]):
                try:
                    main(args, prog_name="graphdsl")
                except SystemExit:
                    pass
        finally:
            sys.stdout, sys.stderr = saved
    text.is_terminal_safe("\x1b")


class Sandbox:
    """Runs cases, `jobs` at a time, each in its own box under `root`."""

    def __init__(self, limits: Limits | None = None, jobs: int = 1, entry: Callable[[list[str]], None] | None = None,
                 coverage: Callable[[str], list[str]] | None = None, root: str | None = None):
        self.limits = limits or Limits()
        self.jobs = max(1, jobs)
        self.entry = entry or default_entry
        self.coverage = coverage
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="graphdsl-fuzz-")).resolve()
        self._count = 0

    def close(self) -> None:
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, case: Case) -> Result:
        return next(self.run_many([case]))

    def run_many(self, cases: Iterable[Case]) -> Iterator[Result]:
        """Results as children finish (not in input order), with at most `jobs` running."""
        pending = iter(cases)
        running: dict[int, _Running] = {}
        use_pidfd = hasattr(os, "pidfd_open")
        sel = selectors.DefaultSelector()
        exhausted = False
        try:
            while running or not exhausted:
                while not exhausted and len(running) < self.jobs:
                    case = next(pending, None)
                    if case is None:
                        exhausted = True
                        break
                    r = self._start(case)
                    running[r.pid] = r
                    if use_pidfd:
                        try:
                            r.pidfd = os.pidfd_open(r.pid)
                            sel.register(r.pidfd, selectors.EVENT_READ, r.pid)
                        except OSError:
                            use_pidfd = False
                if not running:
                    break
                now = time.monotonic()
                deadline = min(r.deadline for r in running.values())
                done: list[int] = []
                if use_pidfd:
                    for key, _ in sel.select(timeout=max(0.0, deadline - now)):
                        done.append(key.data)
                else:
                    pid, _status = _poll_any(running, max(0.0, deadline - now))
                    if pid:
                        done.append(pid)
                now = time.monotonic()
                for r in list(running.values()):
                    if r.pid not in done and now >= r.deadline:
                        r.timed_out = True
                        _kill_group(r.pid)
                        done.append(r.pid)
                for pid in done:
                    r = running.pop(pid)
                    if r.pidfd is not None:
                        sel.unregister(r.pidfd)
                        os.close(r.pidfd)
                    yield self._finish(r)
        finally:
            for r in running.values():
                _kill_group(r.pid)
                try:
                    os.waitpid(r.pid, 0)
                except ChildProcessError:
                    pass
            sel.close()

    # ---- one child --------------------------------------------------------------------------------

    def _start(self, case: Case) -> _Running:
        self._count += 1
        base = self.root / f"c{self._count}"
        box, iodir = base / "box", base / "io"
        iodir.mkdir(parents=True)
        box.mkdir()
        case.materialise(box)
        before = snapshot(box)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 99
            try:
                code = self._child(case, box, iodir)
            except BaseException:  # noqa: BLE001 - a broken sandbox, not a finding: say so and leave
                try:
                    os.write(2, f"fuzz sandbox error:\n{traceback.format_exc()}".encode())
                    (iodir / "sandbox-error").write_text(traceback.format_exc())
                except BaseException:  # noqa: BLE001
                    pass
            os._exit(code)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        return _Running(pid, case, base, box, iodir, before, time.monotonic(), time.monotonic() + self.limits.time_s)

    def _child(self, case: Case, box: Path, iodir: Path) -> int:
        os.setpgid(0, 0)
        lim = self.limits
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (lim.memory_mb << 20, lim.memory_mb << 20))
        cpu = int(lim.time_s) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim.file_mb << 20, lim.file_mb << 20))
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(box / "w")
        # stdin: a pipe that nobody writes and that stays open, like a terminal nobody types into
        r, w = os.pipe()
        os.dup2(r, 0)
        os.close(r)
        keep_open = w  # noqa: F841 - held until exit
        if case.stdout == "capture":
            out = os.open(iodir / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        elif case.stdout == "closed":
            rr, out = os.pipe()
            os.close(rr)
        elif case.stdout == "full":
            node = iodir / "full"
            os.mknod(node, 0o020600, os.makedev(*DEVICES["full"]))
            out = os.open(node, os.O_WRONLY)
        else:
            raise ValueError(f"unknown stdout {case.stdout!r}")
        err = os.open(iodir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        os.environ.update(case.env)
        if case.exec:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as a shell starts a program
            code = "import sys\nfrom graphdsl.cli import run\nsys.argv[0] = 'graphdsl'\nrun()"
            os.execv(sys.executable, [sys.executable, "-c", code, *case.args])
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True)
        sys.argv = ["graphdsl", *case.args]
        hang = open(iodir / "hang", "w")  # noqa: SIM115 - faulthandler writes to it from its thread
        faulthandler.dump_traceback_later(max(0.2, lim.time_s - 0.4), file=hang)
        status = _run_entry(self.entry, case.args, iodir)
        status = _exit_flush(status)
        faulthandler.cancel_dump_traceback_later()
        (iodir / "done").write_text(str(status))
        if self.coverage is not None and case.main in case.files and case.size() < 256_000:
            try:
                text = case.main_text().decode("utf-8-sig")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                (iodir / "rules").write_text("\n".join(self.coverage(text)))
        return status

    def _finish(self, r: _Running) -> Result:
        _pid, status, usage = os.wait4(r.pid, 0)
        res = Result(r.case, wall_s=time.monotonic() - r.started, cpu_s=usage.ru_utime + usage.ru_stime,
                     max_rss=usage.ru_maxrss * 1024)
        if os.WIFEXITED(status):
            res.status = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            res.signal = os.WTERMSIG(status)
        done = r.iodir / "done"
        if r.timed_out and done.exists():  # the case had finished; what ran out of time was the coverage parse
            res.status, res.signal = int(done.read_text() or 0), None
        else:
            res.timed_out = r.timed_out
        res.stdout, res.stdout_size = _read(r.iodir / "stdout")
        res.stderr, res.stderr_size = _read(r.iodir / "stderr")
        res.hang_dump = _read(r.iodir / "hang")[0].decode("utf-8", "replace") if r.timed_out else ""
        sandbox_error = r.iodir / "sandbox-error"
        if sandbox_error.exists():
            raise RuntimeError(f"the fuzz sandbox failed on {r.case.args}:\n{sandbox_error.read_text()}")
        exc = r.iodir / "exception"
        if exc.exists():
            try:
                res.exception = json.loads(exc.read_text())
            except ValueError:
                res.exception = {"type": "?", "message": "", "frames": []}
        rules = r.iodir / "rules"
        if rules.exists():
            res.rules = [x for x in rules.read_text().split("\n") if x]
        res.before = r.before
        res.after = snapshot(r.box)
        for path, entry in res.after.items():
            if entry[0] == "file" and path.endswith((".py", ".dot")) and res.before.get(path) != entry:
                with open(r.box / "w" / path, "rb") as f:
                    res.written[path] = f.read(OUTPUT_READ_CAP)
        shutil.rmtree(r.base, ignore_errors=True)
        return res


@dataclass
class _Running:
    pid: int
    case: Case
    base: Path
    box: Path
    iodir: Path
    before: dict
    started: float
    deadline: float
    timed_out: bool = False
    pidfd: int | None = None


def _run_entry(entry: Callable[[list[str]], None], args: list[str], iodir: Path) -> int:
    """Call the entry as the interpreter runs a console script: SystemExit gives the status, any other
    exception a traceback on stderr and status 1."""
    try:
        entry(list(args))
        return 0
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code & 0xFF
        try:
            print(e.code, file=sys.stderr)
        except Exception:  # noqa: BLE001
            pass
        return 1
    except BaseException as e:  # noqa: BLE001 - this is what the fuzzer looks for
        frames = [f"{_short(f.filename)}:{f.name}" for f in traceback.extract_tb(e.__traceback__)]
        try:
            (iodir / "exception").write_text(json.dumps({"type": type(e).__name__, "message": str(e)[:300],
                                                         "frames": frames}))
        except BaseException:  # noqa: BLE001
            pass
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
        return 1


def _exit_flush(status: int) -> int:
    """What the interpreter does at exit: flush stdout and stderr; a failure is reported as unraisable
    ("Exception ignored in: ...") and the exit status becomes 120."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            stream.flush()
        except Exception as e:  # noqa: BLE001
            try:
                os.write(2, f"Exception ignored in: <_io.TextIOWrapper name='<{name}>'>\n"
                            f"{type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
            status = 120
    return status


def _short(filename: str) -> str:
    """`graphdsl/elaborate.py` for a graphdsl file, else the base name."""
    parts = Path(filename).parts
    if "graphdsl" in parts:
        i = len(parts) - 1 - parts[::-1].index("graphdsl")
        return "/".join(parts[i:])
    return Path(filename).name


def _read(path: Path) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as f:
            data = f.read(OUTPUT_READ_CAP)
            return data, os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return b"", 0


def _kill_group(pid: int) -> None:
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _poll_any(running: dict, timeout: float) -> tuple[int, int]:
    """Without pidfds: poll the children (without reaping them) until one ends or the timeout passes."""
    end = time.monotonic() + timeout
    while True:
        for pid in running:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None and info.si_pid:
                return pid, 0
        if time.monotonic() >= end:
            return 0, 0
        time.sleep(0.002)


def snapshot(box: Path) -> dict[str, tuple]:
    """Every entry of the box: path -> (kind, size, mtime_ns, inode, link target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(box):
        for name in (*dirnames, *filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            rel = os.path.relpath(p, box / "w")
            kind = _kind(st.st_mode)
            target = os.readlink(p) if kind == "link" else ""
            out[rel] = (kind, st.st_size if kind == "file" else 0, st.st_mtime_ns, st.st_ino, target)
    return out


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISLNK, "link"), (stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"), (stat.S_ISSOCK, "sock")):
        if test(mode):
            return name
    return "other"
