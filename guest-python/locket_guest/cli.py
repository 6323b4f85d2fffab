"""locket-py: turns a Python script into a locket plugin.

    locket-py build SCRIPT.py -o PLUGIN.wasm [--python-path DIR]...
    locket-py --version

The script is the plugin: its ``if __name__ == "__main__":`` block runs when
``locket-host run PLUGIN.wasm ARGS...`` starts it, with ``sys.argv`` as
``[PLUGIN.wasm, ARGS...]``, stdin, stdout and stderr the host's, and
``sys.exit(n)`` (or an uncaught exception, which prints its traceback)
giving the exit code as in CPython. ``import locket`` in the script gives
the SDK (``sdk/locket`` in this package, locket.py's API); it is there only
inside the plugin, so this package never shadows locket.py where it is
installed. The script's own folder, and each ``--python-path``, are searched
for the modules it imports. Those modules are imported while the plugin is
built (a running plugin cannot read the folders it was built from), so
their top-level code runs then, once, and not when the plugin runs; the
script's own top level runs at each run.

It runs componentize-py, the pinned dependency of this package, in the
same Python, against the WIT carried in this package (``wit/``), world
``locket:lock/plugin``.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from . import __version__

HERE = os.path.dirname(os.path.abspath(__file__))
WIT = os.path.join(HERE, "wit")
SDK = os.path.join(HERE, "sdk", "locket")

# The module componentize-py wraps: it runs the script as __main__ when the
# host calls wasi:cli/run. It must not be named like the world's bindings.
ENTRY = '''\
import ast
import builtins
import importlib
import sys
import traceback
import types

from wit_world import exports
from wit_world.imports import environment
from wit_world.imports import exit as _exit

FILE = {file!r}
SOURCE = {source!r}

sys.dont_write_bytecode = True


def _load():
    """Compiles the script, and imports what it imports, now: this runs
    while componentize-py builds the plugin, when the script's folder can
    be read; a running plugin has only what was loaded here."""
    tree = ast.parse(SOURCE, FILE)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [node.module + "." + a.name for a in node.names]
        else:
            continue
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError:
                # Not a module (a name in one), or missing: the script's
                # own import says so when it runs, as in CPython.
                pass
    return compile(tree, FILE, "exec")


_CODE = _load()


def _code(status):
    """The exit code CPython gives for SystemExit(status): None is 0, an
    int (a bool too) is itself, as the OS keeps it (its low 8 bits; 255 for
    one too large for a C long), and anything else is printed to stderr
    and is 1."""
    if status is None:
        return 0
    if isinstance(status, int):
        if -(2**63) <= status < 2**63:
            return int(status) & 0xFF
        return 255
    print(status, file=sys.stderr)
    return 1


class Run(exports.Run):
    def run(self) -> None:
        sys.argv = list(environment.get_arguments()) or [FILE]
        main = types.ModuleType("__main__")
        main.__file__ = FILE
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        code = 0
        try:
            exec(_CODE, main.__dict__)
        except SystemExit as exit:
            code = _code(exit.code)
        except BaseException:
            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        if code != 0:
            _exit.exit_with_code(code)
'''


def version_line():
    """``locket-py VERSION (locket:lock@V, componentize-py V)``: this
    package's version, the WIT package it builds against, and the
    componentize-py it runs."""
    import importlib.metadata
    import re

    wit = "unknown"
    try:
        with open(os.path.join(WIT, "locket.wit"), encoding="utf-8") as f:
            found = re.search(r"^package\s+([^;\s]+)\s*;", f.read(), re.MULTILINE)
        if found:
            wit = found.group(1)
    except OSError:
        pass
    try:
        tool = importlib.metadata.version("componentize-py")
    except importlib.metadata.PackageNotFoundError:
        tool = "not installed"
    return "locket-py {0} ({1}, componentize-py {2})".format(__version__, wit, tool)


class VersionAction(argparse.Action):
    """``--version``: prints :func:`version_line` and exits; the line is
    only worked out when asked for, not on every build."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def componentize_py():
    """The command that runs the componentize-py installed with this package,
    in this same Python (its console script may not be on PATH)."""
    try:
        import componentize_py  # noqa: F401
    except ImportError as e:
        sys.exit("locket-py: componentize-py is not installed ({0}): "
                 "reinstall locket-guest, which depends on it".format(e))
    return [
        sys.executable,
        "-c",
        "import sys; from componentize_py import script; "
        "sys.argv[0] = 'componentize-py'; sys.exit(script())",
    ]


def build(script, output, python_paths):
    if not os.path.isfile(script):
        sys.exit("locket-py: {0}: no such file".format(script))
    name = os.path.basename(script)
    if not name.endswith(".py"):
        sys.exit("locket-py: {0}: the script must be a .py file".format(script))
    with open(script, "rb") as f:
        source = f.read()
    try:
        compile(source, name, "exec")
    except SyntaxError as e:
        sys.exit("locket-py: {0}: {1}".format(script, e))
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        sys.exit("locket-py: {0}: no such directory".format(out_dir))
    with tempfile.TemporaryDirectory(prefix="locket-py-") as work:
        app = os.path.join(work, "app")
        os.mkdir(app)
        shutil.copytree(SDK, os.path.join(app, "locket"), ignore=shutil.ignore_patterns("__pycache__"))
        with open(os.path.join(app, "locket_plugin_main.py"), "w") as f:
            f.write(ENTRY.format(file=name, source=source))
        partial = os.path.join(work, "plugin.wasm")
        command = componentize_py() + [
            "-d", WIT,
            "-w", "locket:lock/plugin",
            "--features", "cli-exit-with-code",
            "componentize",
            "-p", app,
            "-p", os.path.dirname(os.path.abspath(script)),
        ]
        for path in python_paths:
            command += ["-p", path]
        command += ["locket_plugin_main", "-o", partial]
        done = subprocess.run(command, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            sys.exit("locket-py: componentize-py failed (exit {0})".format(done.returncode))
        # Written whole, then renamed: a failed build leaves no half plugin.
        target = os.path.abspath(output)
        staged = target + ".partial"
        try:
            shutil.copy(partial, staged)
            os.replace(staged, target)
        except OSError as e:
            if os.path.exists(staged):
                os.remove(staged)
            sys.exit("locket-py: cannot write {0}: {1}".format(output, e))


def main():
    parser = argparse.ArgumentParser(prog="locket-py", description="Python plugins for locket-host.")
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="build a Python script into a plugin component")
    b.add_argument("script", help="the script, whose __main__ block is the plugin")
    b.add_argument("-o", "--output", required=True, help="where to write the plugin (.wasm)")
    b.add_argument(
        "-p", "--python-path", action="append", default=[],
        help="another folder to find the script's imports in (repeatable)",
    )
    args = parser.parse_args()
    if args.command == "build":
        build(args.script, args.output, args.python_path)


if __name__ == "__main__":
    main()
