"""Writing what the CLI makes: whole files or nothing, and only where an output file may go.

An output path is checked before anything is written, and again just before the rename:

- a missing path is created (its folder too);
- a regular file is replaced;
- a symbolic link is followed: the file it points to is replaced (or created) and the link stays, as a
  shell's `>` would do;
- anything else (a device such as the null device, a FIFO, a socket, a directory) is refused: an
  atomic rename would replace the device node itself with a regular file;
- a file this run read (the spec, or a file it imports: `inputs`) is refused, whatever the path that
  names it (a link, a hard link, `./x/../spec.cnn`), compared by device and inode.

A refusal raises `OutputRefused` (an OSError) carrying a message and a `help:` text; nothing is written.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path


class OutputRefused(OSError):
    """An output path that graphdsl will not write: not a regular file, or an input of the same run."""

    def __init__(self, message: str, help: str):
        super().__init__(message)
        self.message = message
        self.help = help

    def __str__(self) -> str:
        return self.message


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """`a directory`, `a character device`, ... for what `os.stat` found (`a regular file` for a file)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def output_target(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """The file that writing `path` replaces or creates: `path` itself, or where a symlink points.
    Raises OutputRefused where that is anything but a regular file or a missing path, or is one of
    `inputs` (the files the run read)."""
    path = Path(path)
    target = path
    try:
        if path.is_symlink():
            target = Path(os.path.realpath(path))
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as e:  # a symlink loop, a path through a file: say why, write nothing
        raise OutputRefused(f"cannot write `{path}`: {e.strerror}", "choose another output path") from None
    via = f" (`{path}` links to `{target}`)" if target != path else ""
    if not stat.S_ISREG(st.st_mode):
        raise OutputRefused(f"`{path}` is {file_kind(st.st_mode)}{via}, not a regular file: graphdsl writes only "
                            "regular files", "choose a file name for the output, e.g. `-o out/NAME`")
    for name in inputs:
        try:
            seen = os.stat(name)
        except OSError:
            continue
        if (seen.st_dev, seen.st_ino) == (st.st_dev, st.st_ino):
            raise OutputRefused(f"`{path}`{via} is an input of this run (`{name}`): writing it would destroy it",
                                "choose another output path: the spec and the files it imports are never "
                                "overwritten")
    return target


def write_atomic(path: str | os.PathLike, data: bytes | str, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write through a temporary file in the same folder and os.replace, so no half-written file is
    ever seen and a failure leaves what was there before. Text is written as UTF-8. Where `path` may
    not be written (see the module's docstring) raises OutputRefused and writes nothing. Returns the
    file written (where a symlink pointed)."""
    inputs = tuple(inputs)
    target = output_target(path, inputs)
    if isinstance(data, str):
        data = data.encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A short temporary name: `.{name}.XXXX.tmp` would not fit beside a name of 250 characters.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".graphdsl-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)  # mkstemp makes 0600 files; give the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if output_target(path, inputs) != target:  # changed under us (a link swapped in): start again
            raise OutputRefused(f"`{path}` changed while it was written", "run the command again")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target
