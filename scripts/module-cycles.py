#!/usr/bin/env python3
"""Fails if any module of any crate in this checkout imports a module that
imports it back, directly or round a longer loop.

For each crate root (a Rust file that no other file declares as a module),
it builds the crate's module tree from its `mod NAME;` and `mod NAME { ... }`
declarations, and a dependency graph with an edge from each module to:

- each module it declares (a parent depends on its children);
- each module that a path in its code names: `crate::a::b::Item` names the
  deepest module in `a::b` that exists, `super::x` and `self::x` likewise,
  relative to the module, and `crate::Item` names the crate root.

Every cycle in that graph is reported. Since a parent depends on its
children, a child that uses an item defined in its parent (or in the crate
root, as `crate::Item`) is a cycle too: shared items belong in a leaf module
of their own. Inline modules (`mod tests { ... }`) count as part of the file
they are in. Comments and string literals are ignored.

Usage: scripts/module-cycles.py [DIR]   (default: the checkout's root)
"""

import re
import subprocess
import sys
from pathlib import Path

MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
PATH_REF = re.compile(r"(?<![\w:])((?:crate|super|self)(?:\s*::\s*(?:\w+|\{))+)")


def strip(source):
    """The source without comments and string or char literals."""
    out, i, n = [], 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            i = n if j < 0 else j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', source[i:]) and (i == 0 or not source[i - 1].isalnum()):
            hashes = re.match(r"r(#*)\"", source[i:]).group(1)
            end = source.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", source[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", source[i:]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def child_file(parent, name, is_dir_owner):
    base = parent.parent if is_dir_owner else parent.parent / parent.stem
    for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
        if candidate.exists():
            return candidate
    return None


def owns_dir(path, root):
    return path == root or path.name in ("mod.rs", "lib.rs", "main.rs")


def inline_depth(code, at):
    """How many inline `mod NAME { ... }` blocks enclose offset `at`."""
    depth = 0
    for match in re.finditer(r"\bmod\s+\w+\s*\{", code[:at]):
        level, j = 1, match.end()
        while j < at and level:
            level += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        if level:
            depth += 1
    return depth


def references(code):
    """Each path that starts with crate::, super:: or self::, as its parts
    and the number of inline modules around it; a `{` part means a group
    follows (`use crate::{a, b::c}`)."""
    refs = []
    for match in PATH_REF.finditer(code):
        nested = inline_depth(code, match.start())
        parts = [p.strip() for p in match.group(1).split("::")]
        if parts[-1] == "{":
            # Expand the group's first-level names: crate::{a::X, b} -> a, b.
            start = match.end()
            depth, j = 1, start
            while j < len(code) and depth:
                depth += {"{": 1, "}": -1}.get(code[j], 0)
                j += 1
            group = code[start : j - 1]
            level, item, names = 0, "", []
            for ch in group + ",":
                if ch == "{":
                    level += 1
                elif ch == "}":
                    level -= 1
                if ch == "," and level == 0:
                    names.append(item.strip())
                    item = ""
                else:
                    item += ch
            for name in filter(None, names):
                head = [p.strip() for p in name.split("::") if p.strip() and "{" not in p]
                refs.append((parts[:-1] + head, nested))
        else:
            refs.append((parts, nested))
    return refs


def crate_graph(root):
    """The module tree of the crate at `root` and its dependency edges."""
    modules = {(): root}
    edges = {}
    todo = [()]
    while todo:
        path = todo.pop()
        file = modules[path]
        code = strip(file.read_text())
        edges.setdefault(path, set())
        for name in MOD_DECL.findall(code):
            child = child_file(file, name, owns_dir(file, root))
            if child is not None:
                modules[path + (name,)] = child
                edges[path].add(path + (name,))
                todo.append(path + (name,))
    for path, file in modules.items():
        code = strip(file.read_text())
        for parts, nested in references(code):
            if parts[0] == "crate":
                base, rest = (), parts[1:]
            elif parts[0] == "self":
                base, rest = path, parts[1:]
            else:
                base, rest = path, parts
                while rest and rest[0] == "super":
                    # Inside an inline module, `super` first climbs to the
                    # file's own module, which is where the reference counts.
                    if nested:
                        nested -= 1
                    else:
                        base = base[:-1]
                    rest = rest[1:]
            target = base
            for name in rest:
                if target + (name,) in modules:
                    target = target + (name,)
                else:
                    break
            if target != path:
                edges[path].add(target)
    return modules, edges


def cycles(edges):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main():
    top = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.rs"],
        cwd=top, capture_output=True, text=True, check=True,
    ).stdout.split()
    files = [top / f for f in listed if (top / f).exists()]
    children = set()
    for file in files:
        code = strip(file.read_text())
        for name in MOD_DECL.findall(code):
            # A file may own its directory either way; accept both.
            for owner in (True, False):
                child = child_file(file, name, owner)
                if child is not None:
                    children.add(child.resolve())
    roots = [f for f in files if f.resolve() not in children]
    failed = False
    for root in sorted(roots):
        modules, edges = crate_graph(root)
        for component in cycles(edges):
            failed = True
            names = ", ".join(
                str(modules[m].relative_to(top)) for m in sorted(component)
            )
            print(f"module cycle in the crate of {root.relative_to(top)}: {names}")
    if failed:
        return 1
    print(f"no module cycles in {len(roots)} crate roots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
