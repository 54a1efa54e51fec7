"""Operator plugins: `Op` classes from other packages, usable from every command and the API.

A plugin is a Python module (or an object in one) that defines operators. It comes in two ways:

- installed: a package declares an entry point in the group `graphdsl.ops`, e.g. in its
  pyproject.toml `[project.entry-points."graphdsl.ops"] example = "graphdsl_example_ops"`. Every
  CLI command loads the installed plugins before it reads a spec; `GRAPHDSL_NO_PLUGINS=1` turns
  that discovery off (for reproducible runs). From Python, `graphdsl.load_plugins()` loads them.
- named: `--ops MODULE` (an importable module, `mypkg.ops`) or `--ops path/to/file.py` (a file, or
  a package folder) on the command line; `graphdsl.load_plugins("mypkg.ops", "ops.py")` from Python.

What a plugin provides, by what the entry point (or `--ops`) names:

- a module: the `Op` subclasses it defines that set a `name`, or, where it has one, its `OPS` list
  (classes or instances); plus anything it registers itself with `graphdsl.register` on import;
- an `Op` subclass or instance, or a list of them: those;
- a function (`register_ops`): it is called; what it registers and what it returns (an op or a
  list of ops, or None) is provided.

Loading is once per process and per plugin, and all or nothing: a plugin that fails to import, or
defines an operator named like a built-in operator, a language keyword, or another plugin's
operator, registers nothing and raises `PluginError` naming the plugin and the cause (the CLI
prints it and exits 1). Registering the same class twice is harmless.

Nothing here imports torch; a plugin should not either at import time (its lowering is source text).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .ops import REGISTRY, Op, register

GROUP = "graphdsl.ops"
DISABLE_ENV = "GRAPHDSL_NO_PLUGINS"
BUILTIN = "builtin"


class PluginError(Exception):
    """A plugin could not be loaded. `plugin` names it; `help`, where there is one, says what to do."""

    def __init__(self, plugin: str, message: str, help: str | None = None):
        super().__init__(f"operator plugin {plugin}: {message}")
        self.plugin, self.message, self.help = plugin, message, help

    def render(self) -> str:
        """`error: ...` and `help: ...` lines, as the CLI prints them."""
        return f"error: {self}" + (f"\nhelp: {self.help}" if self.help else "")


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: its name (the entry point's, or what `--ops` gave), where it came from, and
    the operators it provides."""

    name: str
    source: str  # `entry point example = graphdsl_example_ops (graphdsl-example-ops 0.1.0)`, `module m`, `file f`
    ops: tuple[str, ...]


# The state of this process: plugins by key, which plugin provides each operator, discovery done.
_loaded: dict[tuple[str, str], Plugin] = {}
_providers: dict[str, tuple[str, Op]] = {}  # operator -> (plugin, the instance it registered)
_discovered: list[Plugin] | None = None


def plugins_disabled() -> bool:
    """Whether `GRAPHDSL_NO_PLUGINS` turns off the discovery of installed plugins."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def load_plugins(*modules: str | os.PathLike, entry_points: bool = True) -> list[Plugin]:
    """Load operator plugins into the registry: the installed ones (entry point group `graphdsl.ops`,
    unless `entry_points=False` or the environment sets GRAPHDSL_NO_PLUGINS=1), then each of `modules`,
    an importable module name (`"mypkg.ops"`) or the path of a `.py` file or package folder.

    Each plugin loads once per process; calling again is cheap and returns the same records.
    Returns the plugins, installed ones first. Raises PluginError where one cannot be loaded.
    """
    found: list[Plugin] = []
    if entry_points and not plugins_disabled():
        found += discover()
    for spec in modules:
        found.append(load_named(spec))
    return found


def discover() -> list[Plugin]:
    """Load every plugin installed under the entry point group `graphdsl.ops` (once per process)."""
    global _discovered
    if _discovered is None:
        from importlib.metadata import entry_points

        seen: set[tuple[str, str]] = set()
        plugins = []
        for ep in sorted(entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value)):
            if (ep.name, ep.value) in seen:  # the same distribution found twice on the path
                continue
            seen.add((ep.name, ep.value))
            plugins.append(_load_entry_point(ep))
        _discovered = plugins
    return list(_discovered)


def load_named(spec: str | os.PathLike) -> Plugin:
    """Load one plugin named by `--ops`: a module name, or the path of a .py file or package folder."""
    text = os.fspath(spec)
    if _looks_like_path(text):
        return _load_file(text)
    key = ("module", text)
    if key not in _loaded:
        label = f"`{text}`"
        before = dict(REGISTRY)
        obj = _guard(label, lambda: _import_module(text, label), before)
        _loaded[key] = _provide(text, f"module {text}", label, obj, before)
    return _loaded[key]


def provider(name: str) -> str:
    """Who provides the operator `name`: `builtin`, the plugin's name, or `python (MODULE)` for an op
    registered from Python with `graphdsl.register`."""
    plugin = _plugin_of(name)
    if plugin is not None:
        return plugin
    return BUILTIN if _is_builtin(REGISTRY[name]) else f"python ({_class(REGISTRY[name]).__module__})"


def _plugin_of(name: str) -> str | None:
    """The plugin that registered the operator `name`, while its class is still the one registered."""
    plugin, op = _providers.get(name, (None, None))
    return plugin if op is not None and name in REGISTRY and _same(REGISTRY[name], op) else None


def loaded() -> list[Plugin]:
    """The plugins loaded so far in this process."""
    return list(_loaded.values())


# ---- loading ---------------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    """A path has a `/` or ends in `.py` (or is no dotted name, `.`); anything else is a module name."""
    return text.endswith(".py") or "/" in text or os.sep in text or not all(
        part.isidentifier() for part in text.split("."))


def _load_entry_point(ep) -> Plugin:
    dist = getattr(ep, "dist", None)
    origin = f" ({dist.name} {dist.version})" if dist is not None else ""
    label = f"`{ep.name}` (entry point {GROUP}: {ep.name} = {ep.value}{origin})"
    key = ("entry point", f"{ep.name}={ep.value}")
    if key not in _loaded:
        skip = f"set {DISABLE_ENV}=1 to skip installed plugins" + (f", or uninstall {dist.name}" if dist else "")
        before = dict(REGISTRY)
        obj = _guard(label, ep.load, before, skip)
        _loaded[key] = _provide(ep.name, f"entry point {ep.name} = {ep.value}{origin}", label, obj, before, skip)
    return _loaded[key]


def _import_module(name: str, label: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
            raise  # a module the plugin imports is missing: reported as the plugin's failure
        help = "give an importable module name (on sys.path or PYTHONPATH) or the path of a .py file"
        here = name.split(".")[0]
        if (Path(here + ".py").is_file() or Path(here).is_dir()) and not _cwd_on_path():
            path = f"./{name.replace('.', '/')}" + ("" if Path(name.replace(".", "/")).is_dir() else ".py")
            help = (f"`{here}` is in the current folder, which is not on the module path: give its path, "
                    f"`--ops {path}`, or set PYTHONPATH=.")
        raise PluginError(label, f"no module named `{e.name}`", help) from None


def _cwd_on_path() -> bool:
    cwd = Path.cwd().resolve()
    return any(Path(p or ".").resolve() == cwd for p in sys.path)


def _load_file(text: str) -> Plugin:
    path = Path(text)
    label = f"`{text}`"
    if path.is_dir():
        if not (path / "__init__.py").is_file():
            raise PluginError(label, "the folder is no Python package (it has no __init__.py)",
                              "give a .py file, a package folder, or an importable module name")
        path = path / "__init__.py"
    elif not path.is_file():
        raise PluginError(label, "no such file", "give the path of a .py file, or an importable module name")
    resolved = path.resolve()
    key = ("file", str(resolved))
    if key not in _loaded:
        before = dict(REGISTRY)
        module = _module_of_file(resolved)  # already imported under its own name (an installed plugin)
        if module is None:
            module = _guard(label, lambda: _exec_file(resolved), before)
        _loaded[key] = _provide(text, f"file {text}", label, module, before)
    return _loaded[key]


def _module_of_file(path: Path):
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.basename(file) == path.name:
            try:
                if Path(file).resolve() == path:
                    return module
            except OSError:
                continue
    return None


def _exec_file(path: Path):
    package = path.name == "__init__.py"
    stem = path.parent.name if package else path.stem
    base = "graphdsl_plugin_" + re.sub(r"\W", "_", stem)
    name, n = base, 1
    while name in sys.modules:
        n += 1
        name = f"{base}_{n}"
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and relative imports look here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _guard(label: str, load, before: dict, help: str | None = None):
    """Run `load` (an import), turning any failure into a PluginError that says where it happened;
    on failure the registry is as it was `before`."""
    try:
        return load()
    except PluginError:
        _restore(before)
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a plugin's code is the plugin's
        _restore(before)
        raise PluginError(label, f"failed to import: {type(e).__name__}: {e}{_where(e)}", help) from None


def _where(e: BaseException) -> str:
    if isinstance(e, SyntaxError) and e.filename:
        return f" (at {e.filename}:{e.lineno})"
    frames = traceback.extract_tb(e.__traceback__)
    mine = Path(__file__).resolve()
    outside = [f for f in frames if Path(f.filename).resolve() != mine and "importlib" not in f.filename]
    return f" (at {outside[-1].filename}:{outside[-1].lineno})" if outside else ""


def _restore(before: dict) -> None:
    REGISTRY.clear()
    REGISTRY.update(before)


def _provide(name: str, source: str, label: str, obj, before: dict, skip: str | None = None) -> Plugin:
    """Register the operators `obj` provides, all or none, and record them as `name`'s. `before` is the
    registry before the plugin was imported: what the plugin registered itself since is checked like
    the rest (a built-in it replaced is put back, and reported)."""
    try:
        ops = _collect(obj, label, before)
    finally:
        _restore(before)
    also = f"; or {skip}" if skip else ""
    keywords = _keywords()
    chosen: dict[str, Op | type[Op]] = {}
    for op in ops:
        op_name = getattr(op, "name", None)
        if not isinstance(op_name, str) or not op_name.isidentifier():
            raise PluginError(label, f"the operator class {_qualname(op)} has no valid `name` ({op_name!r})",
                              'set `name = "my_op"` on the class: the name specs call it by' + also)
        if op_name in keywords:
            raise PluginError(label, f"defines the operator `{op_name}`, which is a keyword of the language",
                              "rename the operator (its `name`)" + also)
        current = REGISTRY.get(op_name)
        if current is not None and not _same(current, op):
            if _plugin_of(op_name) is None and _is_builtin(current):
                raise PluginError(label, f"defines the operator `{op_name}`, which is a built-in operator",
                                  "rename the operator (its `name`): a plugin cannot replace a built-in" + also)
            raise PluginError(label, f"defines the operator `{op_name}`, which {_by(op_name)} already provides",
                              "rename one of them (their `name`)" + also)
        if op_name in chosen and not _same(chosen[op_name], op):
            raise PluginError(label, f"defines the operator `{op_name}` twice ({_qualname(chosen[op_name])} and "
                              f"{_qualname(op)})", "give each operator its own `name`")
        chosen.setdefault(op_name, op)  # the first: an instance the plugin registered itself beats its class
    added: list[str] = []
    for op_name, op in chosen.items():
        if op_name in REGISTRY:  # the same class, from this plugin or another: registered once
            continue
        try:
            instance = register(op)
        except Exception as e:  # noqa: BLE001 - the plugin's constructor
            _restore(before)
            for n in added:
                del _providers[n]
            raise PluginError(label, f"cannot create the operator `{op_name}`: {type(e).__name__}: {e}"
                              f"{_where(e)}") from None
        _providers[op_name] = (name, instance)
        added.append(op_name)
    return Plugin(name, source, tuple(chosen))


def _by(op_name: str) -> str:
    if _plugin_of(op_name) is not None:
        return f"the plugin `{_plugin_of(op_name)}`"
    return f"code registered from Python ({_class(REGISTRY[op_name]).__module__})"


def _collect(obj, label: str, before: dict) -> list:
    """The operators `obj` provides (classes or instances): see the module doc."""
    if inspect.ismodule(obj):
        found = _registered_since(before)
        if hasattr(obj, "OPS"):
            listed = obj.OPS
            found += _as_list(listed, f"{label}: its `OPS`")
        else:
            for value in list(vars(obj).values()):
                defined_here = isinstance(value, type) and value.__module__ == obj.__name__
                if defined_here and issubclass(value, Op) and "name" in vars(value):
                    found.append(value)
        if not found:
            raise PluginError(label, "provides no operators", "define `Op` subclasses that set `name`, or list "
                              "them in `OPS = [...]`")
        return found
    if _is_op(obj):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return _as_list(obj, label)
    if callable(obj):
        try:
            result = obj()
        except PluginError:
            raise
        except Exception as e:  # noqa: BLE001
            raise PluginError(label, f"failed: {type(e).__name__}: {e}{_where(e)}") from None
        found = _registered_since(before)
        if result is not None:
            found += _as_list(result if isinstance(result, (list, tuple)) else [result], f"{label}: what it returned")
        if not found:
            raise PluginError(label, "provides no operators", "return the `Op` classes from the function")
        return found
    raise PluginError(label, f"names a {type(obj).__name__}, not a module, an `Op` class or a function")


def _registered_since(before: dict) -> list:
    """What the plugin's code registered itself (`graphdsl.register` at import or in its function)."""
    return [op for name, op in REGISTRY.items() if before.get(name) is not op]


def _as_list(values, what: str) -> list:
    try:
        items = list(values)
    except TypeError:
        raise PluginError(what, f"is a {type(values).__name__}, not a list of `Op` classes") from None
    for item in items:
        if not _is_op(item):
            raise PluginError(what, f"holds {item!r}, which is no `Op` class or instance")
    return items


def _is_op(obj) -> bool:
    return isinstance(obj, Op) or (isinstance(obj, type) and issubclass(obj, Op))


def _class(op) -> type:
    return op if isinstance(op, type) else type(op)


def _qualname(op) -> str:
    cls = _class(op)
    return f"{cls.__module__}.{cls.__qualname__}"


def _same(a, b) -> bool:
    """The same operator: the same class (or instances of it), also where one file was imported twice."""
    ca, cb = _class(a), _class(b)
    if ca is cb:
        return True
    fa, fb = inspect.getfile(ca) if _has_file(ca) else None, inspect.getfile(cb) if _has_file(cb) else None
    return fa is not None and fb is not None and ca.__qualname__ == cb.__qualname__ and (
        Path(fa).resolve() == Path(fb).resolve())


def _has_file(cls: type) -> bool:
    try:
        inspect.getfile(cls)
        return True
    except (TypeError, OSError):
        return False


def _is_builtin(op) -> bool:
    module = _class(op).__module__
    return module == "graphdsl.ops" or module.startswith("graphdsl.ops.")


def _keywords() -> frozenset[str]:
    """The words of the language (`input`, `residual`, `for`...): no operator can be called so."""
    from .syntax import KEYWORDS

    return frozenset(KEYWORDS)


# ---- what `graphdsl ops` lists ------------------------------------------------------------------------


def describe(name: str) -> dict:
    """One registered operator as plain data: name, family, arguments (with defaults as a spec writes
    them, `None` where required), who provides it, its documentation and other names."""
    from .values import show

    op = REGISTRY[name]
    args = [{"name": a.name, "default": None if a.required else ("none" if a.default is None else show(a.default)),
             "required": a.required, "doc": a.doc} for a in op.args]
    return {"name": name, "family": getattr(op, "family", ""), "args": args, "provider": provider(name),
            "merges": op.merges, "doc": op.doc, "known_as": list(op.known_as)}


def signature(info: dict) -> str:
    """`out, kernel, stride=1, pad=0`: the arguments of `describe(...)` as a spec writes them;
    `a, b, ...` first for merging operators."""
    parts = ["a, b, ..."] if info["merges"] else []
    parts += [a["name"] if a["required"] else f"{a['name']}={a['default']}" for a in info["args"]]
    return ", ".join(parts)
