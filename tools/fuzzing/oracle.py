"""What counts as a finding: the promise is located diagnostics, quickly, and nothing else.

Classes (each finding also has a signature: one corpus entry per signature):

- `traceback`: a Python traceback (or "Exception ignored") anywhere in the output; signature: the
  exception type and the innermost graphdsl frame;
- `hang`: still running at the wall limit, or out of CPU time; signature: the command and the module
  it was in (innermost graphdsl frame of faulthandler's dump);
- `memory`: MemoryError, or a peak resident set over the limit;
- `crash`: killed by a signal that is not the sandbox's;
- `exit-code`: a status the command does not document (0 and 1; 2 for a usage error; `render` 3
  only where `dot` is missing; with stdout on a full device, 0 is wrong: the output was lost);
- `written-on-error`: a failed run left a new or changed file;
- `clobbered`: an input of the run (the spec, an imported file) or a FIFO, device node, folder or
  link was replaced or changed, whatever the status;
- `terminal`: a raw control, format or separator character in stdout, stderr or a written .py/.dot
  file (line ends excepted), or output that is not UTF-8;
- `flood`: more than 1 MB of diagnostics, or more than 32 MB of stdout (or the file-size limit hit);
- `disclosure`: a line of a file that is not a spec (a secret planted outside the project, a system
  file) shown in the output;
- `wrong-reject`: a valid spec at an odd but legal path (a `{`, a newline, a 250-character name)
  that does not check or compile.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass
from functools import cache

from graphdsl.text import is_terminal_safe

from .case import Case, join
from .sandbox import Limits, Result

CLASSES = ("traceback", "hang", "memory", "crash", "exit-code", "written-on-error", "clobbered", "terminal", "flood",
           "disclosure", "wrong-reject")
MAX_STDERR = 1 << 20
MAX_STDOUT = 32 << 20

_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')


@dataclass(frozen=True)
class Finding:
    cls: str
    signature: str  # stable across runs: what makes two findings the same problem
    detail: str  # for people: what happened, one or two lines

    @property
    def key(self) -> str:
        return f"{self.cls}:{self.signature}"


def findings(res: Result, limits: Limits) -> list[Finding]:
    """Every finding of one run, at most one per class."""
    case = res.case
    cmd = case.command or "-"
    out: list[Finding] = []
    # -- hangs, memory, crashes
    if res.timed_out or res.signal == signal.SIGXCPU:
        where = innermost(_hang_frames(res.hang_dump)) or "?"
        # a slow run has no single hot spot: the module it was in makes the signature, not the function
        out.append(Finding("hang", f"{cmd}@{where.split(':')[0]}",
                           f"still running after {res.wall_s:.1f} s ({res.cpu_s:.1f} s of CPU), in {where}"))
    text_err = res.stderr.decode("utf-8", "replace")
    text_out = res.stdout.decode("utf-8", "replace")
    exc_type = (res.exception or {}).get("type") or _exception_in(text_err)
    # at the address-space limit, a stack that cannot grow is a SIGSEGV rather than a MemoryError
    segv_at_limit = res.signal in (signal.SIGSEGV, signal.SIGBUS) and res.max_rss > (limits.memory_mb << 20) // 2
    if exc_type == "MemoryError" or res.max_rss > limits.memory_mb << 20 or segv_at_limit:
        where = innermost((res.exception or {}).get("frames", [])) or innermost(_tb_frames(text_err)) or "?"
        what = ("MemoryError" if exc_type == "MemoryError" else "SIGSEGV at the memory limit" if segv_at_limit
                else f"peak RSS over {limits.memory_mb} MB")
        out.append(Finding("memory", f"{cmd}@{where}", f"{what} (peak RSS {res.max_rss >> 20} MB), in {where}"))
    elif res.exception or "Traceback (most recent call last)" in text_err + text_out or "Exception ignored" in text_err:
        frames = (res.exception or {}).get("frames") or _tb_frames(text_err + text_out)
        where = innermost(frames) or "?"
        etype = exc_type or "?"
        message = (res.exception or {}).get("message") or _last_line(text_err)
        out.append(Finding("traceback", f"{etype}@{where}", f"{etype} in {where}: {message[:160]}"))
    quiet_signals = {signal.SIGKILL, signal.SIGXCPU, signal.SIGXFSZ}
    if case.stdout == "closed":
        quiet_signals.add(signal.SIGPIPE)
    if res.signal is not None and res.signal not in quiet_signals and not res.timed_out and not segv_at_limit:
        out.append(Finding("crash", f"{cmd}:{signal.Signals(res.signal).name}",
                           f"killed by {signal.Signals(res.signal).name}"))
    # -- floods
    if res.signal == signal.SIGXFSZ or res.stderr_size > MAX_STDERR or res.stdout_size > MAX_STDOUT:
        stream = "stderr" if res.stderr_size > MAX_STDERR else "stdout"
        out.append(Finding("flood", f"{cmd}:{stream}",
                           f"{res.stderr_size:,} bytes on stderr, {res.stdout_size:,} on stdout"))
    # -- exit status
    if res.status is not None:
        bad = bad_status(res, text_err)
        if bad:
            out.append(Finding("exit-code", f"{cmd}:{case.stdout}:{res.status}", bad))
    # -- files
    out += _file_findings(res)
    # -- terminal safety
    for stream, data in (("stdout", res.stdout), ("stderr", res.stderr), *sorted(res.written.items())):
        problem = terminal_problem(data, tabs=stream != "stderr")
        if problem:
            kind, line = problem
            where = stream if stream in ("stdout", "stderr") else "file" + os.path.splitext(stream)[1]
            ok = "ok" if res.status == 0 else "error"
            out.append(Finding("terminal", f"{cmd}:{ok}:{where}:{kind}", f"{kind} in {where}: {line}"))
            break
    # -- disclosure
    for secret in case.secrets:
        for line in secret_lines(case, secret):
            if line in text_out or line in text_err:
                out.append(Finding("disclosure", f"{cmd}:{'abs' if secret.startswith('/') else 'box'}",
                                   f"a line of {secret} is shown in the output"))
                break
        else:
            continue
        break
    # -- wrong rejects
    if case.expect_ok and res.status not in (0, None) and not any(f.cls in ("traceback", "hang") for f in out):
        out.append(Finding("wrong-reject", f"{cmd}:{case.origin}",
                           f"a valid spec exits {res.status}: {_last_line(text_err)[:160]}"))
    return out


def bad_status(res: Result, text_err: str) -> str:
    """Why the exit status is wrong, or ""."""
    case, status = res.case, res.status
    if case.stdout == "full":
        return "exit 0 with stdout on a full device: the output was lost" if status == 0 else (
            "" if status in (1, 2) else f"exit {status} with stdout on a full device")
    if status in (0, 1):
        return ""
    if status == 2 and ("Usage:" in text_err or text_err.startswith("Error: ")):  # click's usage errors
        return ""
    if status == 3 and case.command == "render" and not dot_available(case.env.get("PATH")):
        return ""
    return f"exit {status}" + (" (stdout closed early)" if case.stdout == "closed" else "")


@cache
def dot_available(path: str | None) -> bool:
    return shutil.which("dot", path=path if path is not None else os.environ.get("PATH")) is not None


def _file_findings(res: Result) -> list[Finding]:
    case, before, after = res.case, res.before, res.after
    cmd = case.command or "-"
    out = []
    inputs = {os.path.normpath(p) for p in case.files} - {os.path.normpath(p) for p in case.outputs}
    # an input or special node replaced or changed, whatever the status
    for path, old in before.items():
        new = after.get(path)
        kind = old[0]
        if kind == "file":
            if os.path.normpath(path) in inputs and new != old:
                what = "spec" if path == case.main else "imported file" if path.endswith(".cnn") else "input file"
                out.append(Finding("clobbered", f"{cmd}:{what}",
                                   f"{path} ({what}) {'removed' if new is None else 'replaced or changed'}"))
                break
        elif new is None or new[0] != kind or new[3] != old[3] or new[4] != old[4]:
            out.append(Finding("clobbered", f"{cmd}:{kind}",
                               f"{path} ({kind}) {'removed' if new is None else 'replaced by a ' + new[0]}"))
            break
    # anything written by a run that failed
    failed = res.status not in (0, None) and not (res.status == 3 and case.command == "render")
    if failed:
        changed = sorted(p for p, e in after.items()
                         if p not in before or (e[0] != "dir" and e != before[p]) or e[0] != before[p][0])
        if changed:
            suffix = os.path.splitext(changed[0])[1] or "(none)"
            out.append(Finding("written-on-error", f"{cmd}:{suffix}",
                               f"exit {res.status}, signal {res.signal}, yet wrote {', '.join(changed[:3])}"))
    return out


def terminal_problem(data: bytes, tabs: bool = True) -> tuple[str, str] | None:
    """(kind of character, the line holding it, escaped) for output a terminal must not receive raw.
    Tabs are harmless to a terminal (DOT source indents with them) unless `tabs` is false."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return "invalid-utf8", repr(data[max(0, e.start - 40):e.start + 10])
    if tabs:
        text = text.replace("\t", " ")
    if is_terminal_safe(text):
        return None
    for line in text.split("\n"):
        if not is_terminal_safe(line):
            for ch in line:
                if not is_terminal_safe(ch):
                    return char_kind(ch), ascii(line[:200])
    return "hidden", ""


def char_kind(ch: str) -> str:
    cp = ord(ch)
    if cp == 0x1B:
        return "ESC"
    if cp == 0x09:
        return "TAB"
    if cp == 0x0D:
        return "CR"
    if cp < 0x20:
        return "C0"
    if 0x7F <= cp <= 0x9F:
        return "C1"
    if cp in (0x2028, 0x2029):
        return "line-separator"
    if cp in (0x061C, 0x200E, 0x200F) or 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069:
        return "bidi"
    if cp in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD):
        return "zero-width"
    if 0xD800 <= cp <= 0xDFFF:
        return "surrogate"
    return "format"


def secret_lines(case: Case, secret: str) -> list[str]:
    """The lines of a secret worth looking for (8 characters or more)."""
    if secret in case.files:
        data = join(case.files[secret])
    else:
        data = _read_system(secret)
    return [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if len(ln.strip()) >= 8]


@cache
def _read_system(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16)
    except OSError:
        return b""


def _hang_frames(dump: str) -> list[str]:
    """faulthandler lists the most recent call first; return them outermost first, like a traceback."""
    frames = []
    for block in dump.split("\n\n"):
        if "most recent call first" in block and ("Current thread" in block or not frames):
            frames = [f"{_short(m.group(1))}:{m.group(3)}" for m in _FRAME.finditer(block)]
    return frames[::-1]


def _tb_frames(text: str) -> list[str]:
    return [f"{_short(m.group(1))}:{m.group(2)}" for m in re.finditer(r'File "([^"]+)", line \d+, in (\S+)', text)]


def innermost(frames: list[str]) -> str:
    """The innermost graphdsl frame (`graphdsl/elaborate.py:_for`), else the innermost frame."""
    for f in reversed(frames):
        if f.startswith("graphdsl/") and not f.startswith("graphdsl/cli.py:main"):
            return f
    return frames[-1] if frames else ""


def _short(filename: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    if "graphdsl" in parts:
        i = len(parts) - 1 - parts[::-1].index("graphdsl")
        return "/".join(parts[i:])
    return parts[-1]


def _exception_in(text: str) -> str | None:
    found = re.findall(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit|Interrupt)):", text, re.M)
    return found[-1].rsplit(".", 1)[-1] if found else None


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
