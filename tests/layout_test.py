"""The package's layout: its modules import each other without cycles (counting imports inside
functions, the usual way around one), and no module is an alias of another."""

import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'vaeprior_jax')


def _modules():
  """{dotted name: path} of every module of the package (a package by its __init__)."""
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(folder, f)
        name = os.path.relpath(path[:-3], os.path.dirname(PACKAGE)).replace(os.sep, '.')
        out[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
  return out


def import_graph(modules):
  """{module: the package's modules it imports anywhere in its file}."""

  def resolve(name):  # `from a.b import c`: module a.b.c if it is one, else a.b.
    while name and name not in modules:
      name = name.rpartition('.')[0]
    return name

  graph = {}
  for name, path in modules.items():
    targets = set()
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        targets.update(resolve(f'{node.module}.{a.name}') for a in node.names)
      elif isinstance(node, ast.Import):
        targets.update(resolve(a.name) for a in node.names)
    graph[name] = {t for t in targets if t and t != name}
  return graph


def cycles(graph):
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
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
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_the_cycle_finder_finds_a_cycle_and_only_cycles():
  assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert cycles({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) == []


def test_the_package_has_no_import_cycle():
  modules = _modules()
  graph = import_graph(modules)
  assert 'vaeprior_jax.train.trainer' in graph  # The walk found the subpackages.
  assert 'vaeprior_jax.methods' in graph['vaeprior_jax.train.trainer']
  assert cycles(graph) == []


def test_no_module_is_an_alias_of_another():
  aliases = []
  for name, path in _modules().items():
    with open(path) as f:
      if 'sys.modules[__name__]' in f.read():
        aliases.append(name)
  assert aliases == []
