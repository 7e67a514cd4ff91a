"""Sphinx configuration of the API reference: ``python -m sphinx -W -b html docs/api docs/api/_build``.

The reference is built from the docstrings (autodoc, numpy style through napoleon) and the
``lagfam`` parser (sphinx-argparse); nothing in it is typed in twice. A class shows its own
members and those of its bases in this package, never what it inherits from torch, the
standard library or numpy (``nn.Module``'s 53 public methods and attributes, ``str``'s on an enum).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

from sphinx.ext.napoleon import docstring as napoleon_docstring
from sphinx.pycode import ModuleAnalyzer

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # a build from a plain checkout, without `pip install -e .`
    sys.path.insert(0, str(ROOT))

project = "lagrangian_family"
author = "the lagrangian_family authors"
copyright = "the lagrangian_family authors"  # noqa: A001 - Sphinx's name
release = importlib.import_module("lagrangian_family").__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinxarg.ext"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
templates_path: list[str] = []

# The modules whose public names (``__all__``) the reference documents, page by page; the test
# suite (tests/test_docs.py) walks the same list for missing docstrings.
PUBLIC_MODULES = [
    "lagrangian_family",
    "lagrangian_family.zoo",
    "lagrangian_family.symbolic.dsl",
    "lagrangian_family.symbolic.limits",
    "lagrangian_family.backends.torch",
    "lagrangian_family.backends.torch.metrics",
    "lagrangian_family.backends.torch.cooper",
    "lagrangian_family.backends.torch.checkpoint",
    "lagrangian_family.backends.torch.distributed",
    "lagrangian_family.backends.torch.tensorboard",
    "lagrangian_family.backends.torch.recipes",
    "lagrangian_family.backends.torch.runs",
    "lagrangian_family.backends.exact",
    "lagrangian_family.data",
    "lagrangian_family.data_sources",
    "lagrangian_family.images",
    "lagrangian_family.files",
    "lagrangian_family.results",
    "lagrangian_family.evaluate",
    "lagrangian_family.cli",
]

#: Members that are hooks of a foreign protocol rather than API: ``print(module)`` calls
#: ``extra_repr``, documented by torch.
EXCLUDED_MEMBERS = ("extra_repr",)


def foreign_bases() -> list[str]:
    """The names of every class outside this package in the bases of a documented class.

    autodoc's ``inherited-members`` takes class names at which to stop: members reached
    through one of them (``nn.Module.register_forward_hook``, ``str.upper``) are left out,
    members of this package's own bases (private ones included) are shown.
    """
    ours, foreign = set(), set()
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            # a name loaded on first use (a module ``__getattr__``: evaluate's torch-backed
            # classifier) is bound, so that autodoc, which lists a module's own names, sees it
            vars(module).setdefault(attr, obj)
            if inspect.isclass(obj):
                for klass in obj.__mro__:
                    (ours if klass.__module__.startswith("lagrangian_family") else foreign).add(klass.__name__)
    clash = ours & foreign
    if clash:  # stopping at a name would hide our own class of that name too
        raise RuntimeError(f"classes of this package share a name with a foreign base: {sorted(clash)}")
    return sorted(foreign)


# ``:members:`` is given on each ``automodule`` (a ``members`` default here would override the
# explicit member list of cli.rst in Sphinx 9.0).
autodoc_default_options = {
    "inherited-members": ",".join(foreign_bases()),
    "show-inheritance": True,
    "member-order": "bysource",
    "exclude-members": ",".join(EXCLUDED_MEMBERS),
}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"

# numpy-style sections (Parameters, Returns, Raises, Examples) through napoleon's parser, run by
# the handler below rather than by napoleon's own (both of its styles are off).
napoleon_google_docstring = False
napoleon_numpy_docstring = False


class NumpyDocstring(napoleon_docstring.NumpyDocstring):
    """napoleon's numpy-style parser, except that the first line of the docstring of an
    attribute, property or constant is never split into a type and a text at its first colon:
    ``the objectives α1 and α2 multiply: I_q(x;z) ...`` is all text (the type shown comes from
    the annotation)."""

    def _parse_attribute_docstring(self) -> list[str]:
        return type(self)(self._dedent(self._consume_to_end()), self._config).lines()


def document_reexported_constants() -> dict[str, list[str]]:
    """Give each constant that a public module re-exports (``backends.torch.F_DIVERGENCES``) the
    ``#:`` comment it has where it is defined: autodoc reads comments only from the source of the
    module it documents, so they are added to that module's (cached) source analysis."""
    found = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        analyzer = ModuleAnalyzer.for_module(module_name)
        analyzer.analyze()
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj) or ("", name) in analyzer.attr_docs:
                continue
            homes = sorted(m for m, mod in list(sys.modules.items())
                           if m.startswith("lagrangian_family") and mod is not None and vars(mod).get(name) is obj)
            for home in homes:
                doc = ModuleAnalyzer.for_module(home).find_attr_docs().get(("", name))
                if doc:
                    analyzer.attr_docs[("", name)] = found[f"{module_name}.{name}"] = list(doc)
                    break
    return found


def numpy_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """``autodoc-process-docstring``: rewrite a numpy-style docstring as reStructuredText."""
    lines[:] = NumpyDocstring(lines, app.config, app, what, name, obj, options).lines()


def setup(app) -> None:
    document_reexported_constants()
    app.connect("autodoc-process-docstring", numpy_docstring)
