"""core's modules import one another one way only: errors <- paths <- terminal <- runs <- compare, auth, kinds;
config <- data <- modeling <- metrics <- predictor <- evaluation <- export <- training <- pipeline <- curve <- backends
<- tracking <- jobs <- search <- worker <- cli, with no cycle (imports inside functions count too), and never
streamlit."""

import ast

from conftest import ROOT


def core_imports() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((ROOT / "core").glob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("core.")}
        graph[path.stem] = {m.split(".")[0] for m in found} - {path.stem}
    return graph


def test_core_has_no_import_cycle():
    graph = core_imports()
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(trail + [module, dep])
            if dep not in state:
                visit(dep, trail + [module])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])


def test_errors_and_paths_are_the_bottom_layers_and_core_never_imports_streamlit():
    graph = core_imports()
    assert graph["errors"] == set() and graph["paths"] == {"errors"} and graph["auth"] == {"paths"}
    assert "modeling" not in graph["data"] and "data" in graph["modeling"]
    for path in (ROOT / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(n.split(".")[0] == "streamlit" for n in names), path.name
