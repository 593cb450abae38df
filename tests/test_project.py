"""The shape of the code base: what the redesign promises stays true.

No import cycles inside the package, no imports hidden in functions, thin tools that load no
other tool, a backbone that knows nothing of DPConv, a README that fits a project page, and
every tool answering ``--help``.
"""
import ast
import os
import os.path as osp

import pytest
from conftest import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(ROOT, 'partialnet_mm')
TOOLS = sorted(f for f in os.listdir(osp.join(ROOT, 'tools')) if f.endswith('.py'))


def package_modules():
    """``{module name: path}`` of every module of the package."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                rel = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
                modules[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
    return modules


def module_level_imports(module, path):
    """Package modules imported by the top-level statements of ``module``, relative imports
    resolved. Importing ``a.b.c`` also runs the package ``a.b``, unless it is one of the
    packages ``module`` belongs to (they are being imported already)."""
    is_package = path.endswith('__init__.py')
    base = module.split('.') if is_package else module.split('.')[:-1]
    own_packages = {'.'.join(base[:depth]) for depth in range(1, len(base) + 1)}
    targets = set()
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        names = []
        if isinstance(node, ast.ImportFrom):
            anchor = base[:len(base) - node.level + 1] if node.level else []
            target = '.'.join(anchor + (node.module.split('.') if node.module else []))
            names = [target] + [f'{target}.{a.name}' for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split('.')
            targets.add(name)
            targets.update('.'.join(parts[:depth]) for depth in range(2, len(parts))
                           if '.'.join(parts[:depth]) not in own_packages)
    return targets


def test_no_import_cycles_in_the_package():
    modules = package_modules()
    graph = {m: {t for t in module_level_imports(m, p) if t in modules and t != m}
             for m, p in modules.items()}
    visiting, done, cycles = [], set(), []

    def visit(node):
        if node in done:
            return
        if node in visiting:
            cycles.append(visiting[visiting.index(node):] + [node])
            return
        visiting.append(node)
        for target in sorted(graph[node]):
            visit(target)
        visiting.pop()
        done.add(node)

    for module in sorted(graph):
        visit(module)
    assert not cycles, 'import cycles: ' + '; '.join(' -> '.join(c) for c in cycles[:5])


def test_no_relative_imports_inside_functions_and_no_runpy():
    offenders = []
    for module, path in package_modules().items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.level:
                        offenders.append(f'{module}.{node.name}')
    assert not offenders, offenders
    for folder in ('partialnet_mm', 'tools', 'tests'):
        for base, _, files in os.walk(osp.join(ROOT, folder)):
            for name in files:
                if name.endswith('.py') and name != 'test_project.py':
                    with open(osp.join(base, name)) as f:
                        assert 'runpy' not in f.read(), osp.join(base, name)


@pytest.mark.parametrize('tool', TOOLS)
def test_tools_are_thin(tool):
    """Argument parsing plus calls into the package: short, and no tool imports another."""
    with open(osp.join(ROOT, 'tools', tool)) as f:
        source = f.read()
    assert len(source.splitlines()) <= 120, f'{tool}: move logic into partialnet_mm'
    tree = ast.parse(source)
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert set(defined) <= {'parse_args', 'main'}, f'{tool} defines {defined}'
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.startswith('tools') for m in imported)


def test_backbone_knows_nothing_of_dpconv():
    with open(osp.join(PACKAGE, 'models', 'backbones', 'partialnet.py')) as f:
        assert 'dpconv' not in f.read().lower()


def test_readme_is_a_project_page():
    size = osp.getsize(osp.join(ROOT, 'README.md'))
    assert size <= 12 * 1024, f'README.md is {size} bytes; details belong in docs/'
    with open(osp.join(ROOT, 'README.md')) as f:
        readme = f.read()
    for section in ('## Installation', '## Usage', '## Results', '## Deployment',
                    '## Citation', '## Layout'):
        assert section in readme, section
    for linked in [line.split('](')[1].split(')')[0] for line in readme.split('[')[1:]
                   if '](' in line and not line.split('](')[1].startswith('http')]:
        assert osp.exists(osp.join(ROOT, linked.split('#')[0])), linked


def test_slow_marker_is_registered():
    with open(osp.join(ROOT, 'pytest.ini')) as f:
        assert 'slow:' in f.read()


def test_every_tool_answers_help(capsys):
    """Each tool's ``--help``, through its ``main`` in this process (what ``python
    tools/<tool> --help`` runs, minus an interpreter per tool), and each tool runs ``main()``
    when started as a script."""
    for tool in TOOLS:
        with open(osp.join(ROOT, 'tools', tool)) as f:
            last = ast.parse(f.read()).body[-1]
        assert ast.unparse(last) == "if __name__ == '__main__':\n    main()", \
            f'{tool} does not end by calling main() when run as a script'
        with pytest.raises(SystemExit) as exited:
            load_tool(tool[:-len('.py')]).main(['--help'])
        printed = capsys.readouterr()
        assert exited.value.code == 0 and 'usage:' in printed.out, f'{tool}: {printed.err}'
