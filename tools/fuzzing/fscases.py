"""File-system and command-line cases: what a spec's path, its imports, the output path and the
standard streams can be, and odd options.

Everything happens inside the case's box: FIFOs and device nodes are private copies (mknod as
root), "system files" are only ever read, and outputs point at the box's own files.
"""

from __future__ import annotations

import random

from .case import Case, blob

SECRET = "FUZZ-SECRET-{n}: the quick brown fox jumps over the lazy dog\nssh-rsa AAAAB3NzaFUZZSECRET{n} user@host\n"
SYSTEM_FILES = ("/etc/passwd", "/etc/hostname", "/etc/os-release", "/proc/self/status", "/proc/cpuinfo")
BLOCKING = ("/dev/stdin", "/proc/self/fd/0", "/dev/fd/0")
ODD_DIRS = ("dir{1}", "a\nb", "sp ace", "{network n { input 3x8x8 }}", "ünï", "\x1b]0;t\x07", "%s%n", "'quote'",
            "tab\there", "-dash", "..dots..", "x" * 200, "a{", "}", "$(echo x)", "\u202espec")
ODD_FILES = ("net.cnn", "net.CNN", "net", "x" * 246 + ".cnn", "{}.cnn", "a\nb.cnn", "-o.cnn", "net.cnn.cnn", " .cnn",
             "\u2028.cnn", "\x1b[2J.cnn")
DEFINES = ("num_classes=0", "num_classes=-1", "num_classes=99999999999999999999999", "num_classes=1e999",
           "num_classes=nan", "num_classes=[[[[", "x=", "=1", "num_classes", "num_classes=\x1b[2J", "width=\"8\"",
           "in=3", "1x=2", "num_classes=" + "9" * 5000, "depth=[1, 2]", "cfg=(1,", "cfg=" + "[" * 3000,
           "cfg=" + "[" * 3000 + "]" * 3000, "num_classes=true", "width=8", "depth=100000", "depth=-5",
           "cfg=[" + "1, " * 20000 + "1]", "width=\u202e8", "nosuch=1", "width=3x224x224", "width=(1)",
           "width=\"\x1b]0;t\x07\"", "cfg=[\"a\", \"b\"]", "width=1.5", "cfg=" + "(" * 2000 + "1" + ")" * 2000)


def with_import(spec: bytes, target: str) -> bytes:
    """`spec` importing `target`: the import goes after the spec's doc string (which must come first)."""
    line = f'\nimport "{target}"\n'.encode("utf-8", "surrogateescape")
    if spec.lstrip().startswith(b'"""'):
        end = spec.find(b'"""', spec.find(b'"""') + 3)
        if end >= 0:
            return spec[:end + 3] + line + spec[end + 3:]
    return line.lstrip(b"\n") + spec


class FsCases:
    def __init__(self, rng: random.Random, valid: list[bytes], devices: bool):
        self.rng = rng
        self.valid = valid  # small specs known to check (the first network of the file)
        self.devices = devices  # whether mknod works here (root)

    def spec(self) -> bytes:
        return self.rng.choice(self.valid)

    def draw(self) -> Case:
        kinds = [self.main_special, self.imports, self.imports, self.odd_path, self.outputs, self.outputs,
                 self.streams, self.cli, self.cli, self.cli]
        case = self.rng.choice(kinds)()
        return case

    def main_special(self) -> Case:
        kind = self.rng.choice(("fifo", "dir", "device", "link-loop", "link-fifo", "empty", "blocking"))
        cmd = self.rng.choice(("check", "summary", "compile", "render"))
        args = [cmd, "net.cnn"] + (["-o", "-"] if cmd in ("compile", "render") else [])
        if kind == "fifo":
            return Case(args, fifos=["net.cnn"], origin="fs-main-fifo")
        if kind == "dir":
            return Case(args, dirs=["net.cnn"], origin="fs-main-dir")
        if kind == "device" and self.devices:
            return Case(args, devices={"net.cnn": self.rng.choice(("null", "zero", "urandom", "full"))},
                        origin="fs-main-device")
        if kind == "link-loop":
            return Case(args, symlinks={"net.cnn": "net.cnn"}, origin="fs-main-link-loop")
        if kind == "link-fifo":
            return Case(args, fifos=["p"], symlinks={"net.cnn": "p"}, origin="fs-main-link-fifo")
        if kind == "blocking":
            args[1] = self.rng.choice(BLOCKING)
            return Case(args, main=None, origin="fs-main-stdin")
        return Case(args, {"net.cnn": blob(b"")}, origin="fs-main-empty")

    def imports(self) -> Case:
        rng = self.rng
        spec = self.spec()
        case = Case([rng.choice(("check", "check", "summary", "compile", "render")), "net.cnn"], origin="fs-import")
        if case.command in ("compile", "render"):
            case.args += ["-o", "-"]
        kind = rng.choice(("fifo", "device", "dir", "blocking", "system", "secret", "secret-link", "text", "binary",
                           "outside-spec", "loop-link", "missing", "self", "odd", "nul", "long"))
        target = "x.cnn"
        if kind == "fifo":
            target = rng.choice(("pipe.cnn", "pipe"))
            case.fifos.append(target)
        elif kind == "device" and self.devices:
            target = "dev.cnn"
            case.devices[target] = rng.choice(("null", "zero", "urandom", "full"))
        elif kind == "dir":
            target = rng.choice(("sub", "sub.cnn", ".", "..", "/"))
            case.dirs += ["sub", "sub.cnn"]
        elif kind == "blocking":
            target = rng.choice(BLOCKING)
        elif kind == "system":
            target = rng.choice(SYSTEM_FILES)
            case.secrets.append(target)
        elif kind in ("secret", "secret-link"):
            n = rng.randrange(1000)
            secret = rng.choice(("../outside/secret.txt", "../outside/id_rsa", "../outside/notes.cnn", "secret.txt"))
            case.files[secret] = blob(SECRET.format(n=n))
            case.secrets.append(secret)
            target = secret if not secret.startswith("../") else "../outside/" + secret.rsplit("/", 1)[1]
            if kind == "secret-link":
                case.symlinks["link.cnn"] = target
                target = "link.cnn"
        elif kind == "text":
            target = rng.choice(("data.txt", "model.py", "README.md", "lib"))
            case.files[target] = blob(rng.choice(("just some notes\nline two\n", "import torch\nprint('hi')\n",
                                                  "```cnn\nblock b { relu }\n```\n", "block b() { relu }\n")))
        elif kind == "binary":
            target = "img.cnn"
            case.files[target] = blob(bytes(rng.randrange(256) for _ in range(200)))
        elif kind == "outside-spec":
            target = "../outside/lib.cnn"
            case.files[target] = blob("block outside_blk() { relu }\n")
        elif kind == "loop-link":
            target = "loop.cnn"
            case.symlinks[target] = target
        elif kind == "self":
            target = "net.cnn"
        elif kind == "odd":
            target = rng.choice(("", " ", "\x1b]0;t\x07.cnn", "{x}.cnn", "a\\nb.cnn", "\u202efdp.cnn", "~/x.cnn",
                                 "$HOME/x.cnn", "*.cnn", "C:\\\\x.cnn", "file:///etc/passwd"))
        elif kind == "nul":
            target = "a\\x00b.cnn"
        elif kind == "long":
            target = rng.choice(("x" * 300 + ".cnn", "a/" * 3000 + "x.cnn", "../" * 200 + "x.cnn"))
        else:
            target = "missing.cnn"
        case.files["net.cnn"] = blob(with_import(spec, target))
        case.origin = f"fs-import-{kind}"
        return case

    def odd_path(self) -> Case:
        rng = self.rng
        d, f = rng.choice(("", *ODD_DIRS)), rng.choice(ODD_FILES)
        path = f"{d}/{f}" if d else f
        if path.startswith("-"):
            path = "./" + path
        cmd = rng.choice(("check", "summary", "compile", "render"))
        args = [cmd, path]
        if cmd == "compile":
            args += ["-o", rng.choice(("-", "out.py", "m" * 247 + ".py", f"{d or 'o'}/out.py", "o{1}.py"))]
        elif cmd == "render":
            args += ["-o", rng.choice(("-", "out.dot", f"{d or 'o'}/out.dot"))]
        return Case(args, {path: blob(self.spec())}, main=path, expect_ok=True, origin="fs-odd-path")

    def outputs(self) -> Case:
        rng = self.rng
        spec = self.spec()
        cmd = rng.choice(("compile", "render"))
        main = "net.cnn" if cmd == "compile" else rng.choice(("net.cnn", "net.dot"))
        case = Case([cmd, main, "-o", "out.py" if cmd == "compile" else "out.dot"], {main: blob(spec)}, main=main,
                    origin="fs-output")
        kind = rng.choice(("spec", "import", "fifo", "device", "dir", "link-spec", "link-dangling", "parent-file",
                           "new-dir", "earlier", "invalid", "invalid", "fallback"))
        out = "out.py" if cmd == "compile" else rng.choice(("out.dot", "out.svg"))
        if kind == "spec":
            out = main
        elif kind == "import":
            case.files["lib.cnn"] = blob("block lib_blk() { relu }\n")
            case.files[main] = blob(with_import(spec, "lib.cnn"))
            out = "lib.cnn" if cmd == "compile" else "lib.dot"
            if cmd == "render":
                case.files["lib.dot"] = case.files.pop("lib.cnn")
                case.files[main] = blob(with_import(spec, "lib.dot"))
        elif kind == "fifo":
            case.fifos.append(out)
        elif kind == "device" and self.devices:
            case.devices[out] = rng.choice(("null", "full"))
        elif kind == "dir":
            case.dirs.append(out)
        elif kind == "link-spec":
            case.symlinks[out] = main
        elif kind == "link-dangling":
            case.symlinks[out] = "nowhere/x"
        elif kind == "parent-file":
            out = f"{main}/{out}"
        elif kind == "new-dir":
            out = f"new/dir/{out}"
        elif kind == "earlier":
            case.files[out] = blob("# an earlier output\n")
            case.outputs.append(out)
        elif kind == "invalid":
            case.files[main] = blob(spec.replace(b"input", b"inptu", 1) if rng.random() < 0.5 else spec + b"\nnosuch\n")
            if rng.random() < 0.5:
                case.files[out] = blob("# an earlier output\n")
                case.outputs.append(out)
        elif kind == "fallback":
            case.env["PATH"] = "/nonexistent"
            out = rng.choice(("net.svg", "out.svg"))
            if rng.random() < 0.6:  # the .dot written instead is the spec
                case.files = {"net.dot": case.files[main]}
                case.main = main = "net.dot"
                case.args[1] = main
                case.args[0] = cmd = "render"
        case.args[3] = out
        case.origin = f"fs-output-{kind}"
        return case

    def streams(self) -> Case:
        rng = self.rng
        spec = self.spec()
        cmd = rng.choice(("check", "summary", "compile", "render", "ops"))
        args = [cmd] if cmd == "ops" else [cmd, "net.cnn"]
        if cmd in ("compile", "render"):
            args += ["-o", "-"]
        if rng.random() < 0.3 and cmd != "ops":
            spec += b"\nnosuch\n"
        stdout = rng.choice(("closed", "full")) if self.devices else "closed"
        return Case(args, {"net.cnn": blob(spec)}, stdout=stdout, exec=True, origin=f"stream-{stdout}")

    def cli(self) -> Case:
        rng = self.rng
        spec = self.spec()
        if rng.random() < 0.15:
            args = ["ops", *rng.sample(("conv", "nosuch", "\x1b[2J", "relu", "cnov", "", "x" * 5000, "--format", "json",
                                        "--bogus"), rng.randint(0, 3))]
            return Case(args, origin="cli-ops")
        cmd = rng.choice(("check", "summary", "compile", "render"))
        args = [cmd, "net.cnn"]
        for _ in range(rng.randint(1, 4)):
            opt = rng.choice(("-D", "-D", "-D", "--network", "--depth", "--format", "-o", "--expand", "--ops",
                              "--bogus", "--help", "--device", "--version"))
            if opt == "-D":
                args += ["-D", rng.choice(DEFINES)]
            elif opt == "--network":
                args += ["--network", rng.choice(("", "nosuch", "\x1b]0;x\x07", "n" * 10000, "net", "netw"))]
            elif opt == "--depth":
                args += ["--depth", rng.choice(("0", "1", "2", "-1", "99999999999999999999", "x", "1000000"))]
            elif opt == "--format":
                args += ["--format", rng.choice(("json", "csv", "markdown", "table", "text", "xml"))]
            elif opt == "-o":
                args += ["-o", rng.choice(("-", "out.py", "out.svg", "out.dot", "out.png", "out.txt", ""))]
            elif opt == "--ops":
                args += ["--ops", rng.choice(("no_such_module_zz", "./missing.py", "net.cnn"))]
            elif opt == "--device":
                args += ["--device", rng.choice(("cpu", "cuda", "tpu"))]
            else:
                args.append(opt)
        if rng.random() < 0.1:
            rng.shuffle(args)
        if "-o" in args and args.index("-o") == len(args) - 1:
            args.append("-")
        return Case(args, {"net.cnn": blob(spec)}, origin="cli-options")
