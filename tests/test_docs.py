"""The API reference: every public object documented, and the reference builds without a warning.

The public modules are the ones the reference documents (``PUBLIC_MODULES`` in
``docs/api/conf.py``); a module's public names are its ``__all__`` (else the classes and
functions it defines under names without a leading underscore, as autodoc takes them). A
class's public members are the methods and properties that its own classes in this package
define, ``forward`` included; what it inherits from ``torch.nn.Module``, the standard library or
``object`` is not ours to document.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "api"

sphinx_pycode = pytest.importorskip("sphinx.pycode", reason="the docs extra: pip install -e '.[docs]'")
pytest.importorskip("sphinxarg", reason="the docs extra: pip install -e '.[docs]'")


def _conf():
    spec = importlib.util.spec_from_file_location("lagrangian_family_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


CONF = _conf()


def _ours(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("lagrangian_family")


def public_names(module: types.ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, value in vars(module).items() if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module.__name__]


def _class_doc(cls: type) -> str:
    doc = vars(cls).get("__doc__") or ""
    generated = dataclasses.is_dataclass(cls) and doc.startswith(cls.__name__ + "(")  # dataclass's signature
    if generated or (issubclass(cls, enum.Enum) and doc.strip() == "An enumeration."):
        return ""
    return doc.strip()


def _member_doc(value) -> str:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    return (getattr(value, "__doc__", None) or "").strip()


def _is_member(value) -> bool:
    return (inspect.isfunction(value) or isinstance(value, (property, functools.cached_property,
                                                             staticmethod, classmethod)))


def class_members_without_doc(cls: type) -> list[str]:
    """Public methods and properties defined by ``cls`` or its bases in this package, without a
    docstring of their own or one inherited from the same member of a base in this package."""
    missing = []
    ours = [k for k in cls.__mro__ if _ours(k)]
    names = {n for k in ours for n, v in vars(k).items() if not n.startswith("_") and _is_member(v)}
    for name in sorted(names - set(CONF.EXCLUDED_MEMBERS)):
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if not _ours(owner) or not _is_member(vars(owner)[name]):
            continue  # resolved to a foreign definition or a plain attribute: not a method of ours
        chain = [k for k in cls.__mro__[cls.__mro__.index(owner):]
                 if _ours(k) and name in vars(k) and _is_member(vars(k)[name])]
        if not any(_member_doc(vars(k)[name]) for k in chain):
            missing.append(f"{owner.__module__}.{owner.__qualname__}.{name}")
    return missing


def _data_documented(module: types.ModuleType, name: str) -> bool:
    """A constant has a ``#:`` comment or a docstring where it is defined (found by identity)."""
    obj = getattr(module, name)
    homes = [m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)
             and m.__name__.startswith("lagrangian_family") and vars(m).get(name) is obj]
    for home in sorted(homes, key=lambda m: m.__name__):
        try:
            docs = sphinx_pycode.ModuleAnalyzer.for_module(home.__name__).find_attr_docs()
        except sphinx_pycode.PycodeError:
            continue
        if "".join(docs.get(("", name), ())).strip():
            return True
    return False


def undocumented() -> list[str]:
    missing, seen = [], set()
    for module_name in CONF.PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        if not (module.__doc__ or "").strip():
            missing.append(module_name)
        for name in public_names(module):
            obj = getattr(module, name)
            where = f"{module_name}.{name}"
            if isinstance(obj, types.ModuleType):
                if not (obj.__doc__ or "").strip():
                    missing.append(where)
            elif inspect.isclass(obj):
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                if not _class_doc(obj):
                    missing.append(where)
                missing += class_members_without_doc(obj)
            elif inspect.isroutine(obj) or hasattr(obj, "__wrapped__"):  # functools.cache keeps the docstring
                if not (obj.__doc__ or "").strip():
                    missing.append(where)
            elif not _data_documented(module, name):
                missing.append(where + " (a constant: document it with a #: comment)")
    return sorted(set(missing))


def test_every_public_object_is_documented():
    missing = undocumented()
    assert not missing, "public objects without a docstring:\n  " + "\n  ".join(missing)


# -- the checker itself: it finds what it is meant to find ------------------------------------------


def test_the_checker_finds_a_missing_method_docstring_and_ignores_torch():
    import torch

    class Base(torch.nn.Module):
        def forward(self, x):
            """Documented once, in the base."""
            return x

    class Child(Base):
        """A child."""

        def forward(self, x):  # inherits the base's docstring
            return x

        def extra(self):
            return 1

        @property
        def size(self):
            return 2

    for k in (Base, Child):
        k.__module__ = "lagrangian_family.fake"
    missing = class_members_without_doc(Child)
    assert [m.rsplit(".", 1)[-1] for m in missing] == ["extra", "size"]  # not forward, not nn.Module's


def test_the_checker_sees_a_dataclass_without_docstring():
    @dataclasses.dataclass
    class Plain:
        a: int

    assert _class_doc(Plain) == ""


# -- the reference -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """The reference built as plain text with warnings as errors (the same sources and checks as
    the HTML build of the README's command, in a few seconds)."""
    out = tmp_path_factory.mktemp("api")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "text",
           "-d", str(out / "doctrees"), str(DOCS), str(out / "text")]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, f"the API reference has build warnings:\n{run.stderr[-6000:]}"
    return {p.stem: p.read_text(encoding="utf-8") for p in (out / "text").glob("*.txt")}


def test_the_reference_builds_without_warnings(reference):
    assert {"index", "symbolic", "torch", "exact", "data", "images", "evaluate", "zoo", "cli"} <= set(reference)


def test_the_reference_shows_every_public_name(reference):
    text = "\n".join(reference.values())
    for module_name in CONF.PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            if not isinstance(getattr(module, name), types.ModuleType):
                assert f"{module_name}.{name}" in text, f"{module_name}.{name} is not in the reference"


def test_the_torch_reference_shows_our_members_not_nn_modules(reference):
    torch_page = reference["torch"]
    assert "forward(x: Tensor, params: Mapping | None = None, **kwargs) -> LossOutput" in torch_page
    for inherited in ("register_forward_hook", "named_parameters", "zero_grad", "load_state_dict(state_dict,"):
        assert inherited not in torch_page, f"nn.Module's {inherited} is in the reference"
    assert not re.search(r"^\s*extra_repr\(", torch_page, flags=re.M)  # torch's printing hook, not API
    # a member inherited from a private base of ours is shown (the Gaussian decoder's forward)
    section = torch_page.split("class lagrangian_family.backends.torch.GaussianMLPDecoder", 1)[1]
    assert "forward(" in section.split("\nclass ", 1)[0]


def test_the_cli_reference_is_the_parser(reference):
    from lagrangian_family.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # the subcommands, as argparse holds them
    cli = reference["cli"]
    assert sub.choices, "no subcommands"
    for name, subparser in sub.choices.items():
        assert name in cli, f"lagfam {name} is not in the reference"
        for action in subparser._actions:
            if action.help == argparse.SUPPRESS:  # hidden from --help, and so from the reference
                continue
            for option in action.option_strings:
                assert option in cli, f"lagfam {name} {option} is not in the reference"


# -- the tutorial notebook ------------------------------------------------------------------------------

NOTEBOOK = ROOT / "examples" / "tutorial.ipynb"

#: run after the tutorial's own cells (not saved in it): the state the tests check, as JSON
_STATE_CELL = """
import json
print(json.dumps({
    "runs": {str(a): {"mi": float(r["mi"]), "multipliers": r["lag"].multipliers.tolist(),
                      "satisfied": r["constraints"]["satisfied"]} for a, r in runs.items()},
    "mi_reference": float(mi_reference),
    "classes_covered": scores["classes_covered"],
    "reference_classes_covered": scores["reference"]["classes_covered"],
    "frechet_distance": scores["frechet_distance"],
    "reference_frechet_distance": scores["reference"]["frechet_distance"],
    "custom_dual": str(custom.dual.objective()),
    "custom_computability": str(custom.computability),
}))
"""


def test_the_committed_notebook_has_no_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def executed_tutorial(tmp_path_factory):
    """The tutorial run top to bottom in a fresh kernel, in a scratch folder, with a scratch cache."""
    pytest.importorskip("torch")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    work = tmp_path_factory.mktemp("tutorial")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_STATE_CELL))
    env = {"LAGFAM_CACHE": str(work / "cache"), "OMP_NUM_THREADS": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(work)}})
        client.execute()  # raises CellExecutionError, naming the cell, on any error
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, work


def test_the_tutorial_runs(executed_tutorial):
    nb, work = executed_tutorial
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    warnings = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr" and "Warning" in o.text]
    assert not warnings, f"the tutorial prints warnings: {warnings}"
    state = json.loads(nb.cells[-1].outputs[-1]["text"])
    # the custom objective is the ELBO (KL between the joints) plus its MMD term, a T2 objective
    assert state["custom_dual"] == "KL(q(x,z) || p(x,z)) + lambda * MMD(q(z) || p(z))"
    assert state["custom_computability"] == "unary likelihood-free"
    # dual ascent moved the multipliers from their start (1, 1) and kept them non-negative
    for run in state["runs"].values():
        assert all(v >= 0 for v in run["multipliers"]) and run["multipliers"] != [1.0, 1.0]
    # the sign of alpha1 decides (the paper's section 7.1): alpha1 = -1 raises I_q above the
    # reference model both runs start from, and above the run with alpha1 = +1
    mi_max, mi_min = state["runs"]["-1.0"]["mi"], state["runs"]["1.0"]["mi"]
    assert mi_max > state["mi_reference"] and mi_max > mi_min
    # and it does so within its constraints, measured on the training data as epsilon was
    assert all(state["runs"]["-1.0"]["satisfied"].values())
    # the judge sees every digit in real test images; the samples are farther from the data than they are
    assert state["reference_classes_covered"] == 10
    assert state["frechet_distance"] > state["reference_frechet_distance"]


def test_the_tutorial_writes_its_pictures(executed_tutorial):
    from PIL import Image  # an independent PNG reader

    _, work = executed_tutorial
    out = work / "tutorial_output"
    # 64 samples, 8 per row, tiles of 8x8 pixels enlarged 4 times, 2 pixels apart and around
    side = 8 * (8 * 4 + 2) + 2
    with Image.open(out / "samples.png") as im:
        assert im.size == (side, side)
    # 10 test images above their 10 reconstructions
    with Image.open(out / "reconstructions.png") as im:
        assert im.size == (10 * (32 + 2) + 2, 2 * (32 + 2) + 2)
    assert (out / "traversal.png").stat().st_size > 0 and (out / "model.pt").stat().st_size > 0
