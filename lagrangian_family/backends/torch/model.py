"""Save, load and use a trained model: one file, rebuilt without the user's code.

:func:`save_model` writes one file holding everything needed to rebuild a compiled objective
(or compiled :class:`~.lagrangian.Lagrangian`):

* the objective's text as the symbolic layer reads it back (for a Lagrangian: the primal, each
  constraint's divergence and name; ε and the multipliers λ are buffers, saved with the weights),
  and the values of its parameters (β, α, ...);
* the specification of each component (:func:`component_spec`): a built-in component by its
  class and ``config`` (its constructor's keyword arguments), a ``torch.nn.Sequential`` of
  standard layers by its layers, a ``torch.distributions`` prior by its parameters, and a
  user's own class by its name (and its ``config`` if it has one);
* the compile settings and, for each term, the estimator the registry chose (by its registered
  name and options) and the specification of its critic;
* every weight: encoder, decoder, prior, critics, multipliers and bounds (``state_dict``).

The file is a ``torch.save`` archive of tensors, strings and numbers only, read back with
``torch.load(weights_only=True)``: nothing in it is executed, and a class is only ever looked up
among the built-in components, ``torch.nn``, ``torch.distributions`` and the classes the user
passes. A format version and a SHA-256 checksum of the specification and every tensor guard
against damaged or foreign files (:class:`ModelFileError`). The file is written atomically
(a temporary file in the same folder, then a rename), so an interrupted save leaves the old
file intact.

:func:`load_model` rebuilds the components (a custom class needs ``modules=``), recompiles the
objective with the recorded estimators and critics, loads the weights and returns a
:class:`Model`: the compiled loss (``model.loss_fn``, ready to keep training) with
``sample(n)``, ``reconstruct(x)``, ``encode(x)``, ``decode(z)`` and ``translate(z)``.

A data-backed prior (:class:`~.components.DataSamplerPrior`, CycleGAN's second image domain) is
not stored: its ``source`` is (see :mod:`lagrangian_family.data_sources`), or ``prior=`` supplies
it at load time.

>>> import tempfile, os, torch
>>> from lagrangian_family.backends.torch import (compile_objective, GaussianMLPEncoder,
...     BernoulliMLPDecoder, StandardNormalPrior)
>>> torch.manual_seed(0)
<torch._C.Generator object at ...>
>>> loss_fn = compile_objective("beta_vae", encoder=GaussianMLPEncoder(6, 2, hidden=(8,)),
...     decoder=BernoulliMLPDecoder(2, 6, hidden=(8,)), prior=StandardNormalPrior(2), params={"beta": 4.0})
>>> folder = tempfile.mkdtemp()
>>> path = save_model(os.path.join(folder, "model.pt"), loss_fn, note="a doctest")
>>> model = load_model(path)
>>> tuple(model.sample(5).shape), model.metadata["note"], model.loss_fn.defaults["beta"]
((5, 6), 'a doctest', 4.0)
>>> x = torch.bernoulli(torch.full((3, 6), 0.5))
>>> bool(torch.equal(model.encode(x), loss_fn.encoder(x).mean))
True
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Distribution

from lagrangian_family.errors import ObjectiveError

from . import components as _components
from .compile import CompiledObjective
from .samples import _EvalMode

__all__ = ["Model", "ModelFileError", "save_model", "load_model", "component_spec", "build_component",
           "register_component", "MODEL_FILE", "FORMAT", "FORMAT_VERSION"]

#: The model file's name inside a run folder.
MODEL_FILE = "model.pt"
#: The format tag and version written in every model file.
FORMAT = "lagrangian_family.model"
FORMAT_VERSION = 1

_ROLES = ("encoder", "decoder", "prior")
_CRITIC = "critic:"


class ModelFileError(ObjectiveError):
    """A model file that cannot be read, or a model that cannot be rebuilt from it.

    >>> issubclass(ModelFileError, ObjectiveError)
    True
    """


# -- component specifications ---------------------------------------------------------------------

_EXTRA_COMPONENTS: dict[str, type] = {}


def register_component(cls: type | None = None, *, name: str | None = None):
    """Register a component class defined outside ``components.py`` as built-in: a model file
    then names it and :func:`build_component` rebuilds it from its ``config`` without
    ``modules=``. Usable as a decorator. The class must store its constructor's keyword
    arguments as a JSON-serialisable ``self.config``.

    >>> @register_component
    ... class Doubler(nn.Module):
    ...     def __init__(self, k: int = 2):
    ...         super().__init__()
    ...         self.config = {"k": k}
    >>> build_component(component_spec(Doubler(3))).config
    {'k': 3}
    >>> _ = _EXTRA_COMPONENTS.pop("Doubler")
    """

    def deco(c: type) -> type:
        _EXTRA_COMPONENTS[name or c.__name__] = c
        return c

    return deco(cls) if cls is not None else deco


def _builtins() -> dict[str, type]:
    table = {n: getattr(_components, n) for n in _components.__all__}
    table = {n: c for n, c in table.items() if isinstance(c, type) and issubclass(c, nn.Module)}
    return {**table, **_EXTRA_COMPONENTS}


def _qualname(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _json_safe(value, what: str):
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{what} is not JSON-serialisable", expected="strings, numbers, booleans, lists, dicts",
                             given=f"{type(e).__name__}: {e}", fix="store names and numbers, not objects") from e


def _plain_module(m: nn.Module) -> bool:
    """A module of ``torch.nn`` itself, with no hooks or parametrizations."""
    cls = type(m)
    if not cls.__module__.startswith("torch.nn.modules") or getattr(nn, cls.__name__, None) is not cls:
        return False
    return not (m._forward_pre_hooks or m._forward_hooks or getattr(m, "parametrizations", None))


def _shapes(m: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _on_meta(make: Callable[[], nn.Module]) -> nn.Module | None:
    """Build a module on the meta device (no memory, no random numbers); None if that fails."""
    try:
        with torch.device("meta"):
            return make()
    except Exception:  # noqa: BLE001 - a constructor that cannot run on meta is simply not checked
        return None


def _torch_layer_spec(m: nn.Module) -> dict | None:
    """``{"class": "torch.nn.X", "config": ...}`` if the constructor's arguments can be read off
    the layer (checked by rebuilding it and comparing its text and weight shapes), else None."""
    cls = type(m)
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    config = {}
    for name, par in list(sig.parameters.items())[1:]:
        if name in ("device", "dtype") or par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            continue
        if name == "bias":  # a flag in the constructor, a parameter (or None) in the layer
            if hasattr(m, "bias"):
                config[name] = m.bias is not None
        elif hasattr(m, name):
            v = getattr(m, name)
            config[name] = list(v) if isinstance(v, (tuple, torch.Size)) else v
        elif par.default is par.empty:
            return None
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError):
        return None
    rebuilt = _on_meta(lambda: cls(**config))
    if rebuilt is None or repr(rebuilt) != repr(m) or _shapes(rebuilt) != _shapes(m):
        return None
    return {"class": f"torch.nn.{cls.__name__}", "config": config}


def _distribution_spec(d: Distribution) -> dict:
    if isinstance(d, torch.distributions.Independent):
        return {"class": "torch.distributions.Independent", "base": _distribution_spec(d.base_dist),
                "reinterpreted_batch_ndims": int(d.reinterpreted_batch_ndims)}
    cls = type(d)
    if getattr(torch.distributions, cls.__name__, None) is not cls:
        return {"class": _qualname(d), "custom": True}
    params = {}
    for name in d.arg_constraints:
        if name in d.__dict__ and isinstance(d.__dict__[name], torch.Tensor):
            t = d.__dict__[name].detach().cpu()
            params[name] = {"data": t.double().flatten().tolist(), "shape": list(t.shape),
                            "dtype": str(t.dtype).removeprefix("torch.")}
            if name in ("probs", "logits"):
                break  # one of the two parametrisations
    return {"class": f"torch.distributions.{cls.__name__}", "params": params}


def component_spec(module, *, tied: Mapping[str, nn.Module] | None = None) -> dict:
    """A JSON-serialisable description of a component, from which :func:`build_component`
    rebuilds it (without its weights). ``tied``: {submodule name: module} for submodules that
    another component owns (shared layers, which loading puts back), so that the check that the
    config rebuilds the component compares it with those in place.

    * a built-in component (``components.__all__`` or :func:`register_component`):
      ``{"class": name, "config": module.config}``;
    * a layer of ``torch.nn`` or an ``nn.Sequential`` of them: the layers and their arguments;
    * a ``torch.distributions`` object (a prior): its class and parameter values;
    * anything else: ``{"class": "package.module.Class", "custom": true}`` plus ``config`` when the
      object has one; loading it needs the user's class or instance (``modules=``).

    >>> from lagrangian_family.backends.torch import GaussianMLPEncoder
    >>> spec = component_spec(GaussianMLPEncoder(4, 2, hidden=(8,)))
    >>> spec["class"], spec["config"]["hidden"], spec["config"]["activation"]
    ('GaussianMLPEncoder', [8], 'Softplus')
    >>> component_spec(nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2)))["children"][1]
    {'class': 'torch.nn.LeakyReLU', 'config': {'negative_slope': 0.2, 'inplace': False}}
    """
    if isinstance(module, Distribution):
        return _distribution_spec(module)
    cls = type(module)
    if cls.__name__ == "DistributionPrior" and callable(getattr(module, "distribution", None)):
        # a torch distribution wrapped as a module (its tensors are buffers, saved with the weights)
        return {"class": "DistributionPrior", "distribution": _distribution_spec(module.distribution())}
    builtins = _builtins()
    name = next((n for n, c in builtins.items() if c is cls), None)
    config = getattr(module, "config", None)
    if name is not None:
        if not isinstance(config, Mapping):
            raise ModelFileError(f"the built-in component {name} has no config", expected="every built-in component "
                                 "stores its constructor's keyword arguments as self.config", given=f"{name}.config = "
                                 f"{config!r}", fix=f"set self.config in {name}.__init__ (a bug to report)")
        spec = {"class": name, "config": _json_safe(dict(config), f"the config of {name}")}
        _check_rebuilds(module, spec, tied or {})
        return spec
    if isinstance(module, nn.Module):
        if cls is nn.Sequential and not (module._forward_pre_hooks or module._forward_hooks):
            children = [component_spec(c) for c in module]
            if not any(c.get("custom") for c in children):
                return {"class": "torch.nn.Sequential", "children": children}
        elif _plain_module(module):
            spec = _torch_layer_spec(module)
            if spec is not None:
                return spec
    spec = {"class": _qualname(module), "custom": True}
    if isinstance(config, Mapping):
        try:
            spec["config"] = json.loads(json.dumps(dict(config)))
        except (TypeError, ValueError):
            pass
    return spec


def _check_rebuilds(module: nn.Module, spec: Mapping, tied: Mapping[str, nn.Module]) -> None:
    """Rebuild a built-in component from its config on the meta device (no memory, no random
    numbers), put back the submodules that another component owns (``tied``), and compare it
    with the original, so that a config that does not describe its module is caught when saving,
    not when loading. Components that cannot be built without their data (a data-backed prior)
    or a user's activation are not checked."""
    try:
        with torch.device("meta"):
            rebuilt = build_component(spec)
    except Exception:  # noqa: BLE001 - not checkable here; loading will say what is missing
        return
    try:
        for name, sub in tied.items():
            _set_submodule(rebuilt, name, sub)
    except (AttributeError, TypeError) as e:
        raise ModelFileError(f"{spec['class']} shares layers that its config does not rebuild", expected="shared "
                             "layers in the place the component's own layers would have", given=str(e),
                             fix="share whole layers that the component builds itself (components.share_trunk)") from e
    if repr(rebuilt) != repr(module) or _shapes(rebuilt) != _shapes(module):
        raise ModelFileError(f"the config of {spec['class']} does not rebuild it", expected="self.config holding every "
                             "constructor argument", given=json.dumps(spec["config"]),
                             fix=f"complete self.config in {spec['class']}.__init__ (a bug to report)")


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _lookup(name: str, modules: Mapping | None):
    """A user's class or factory for ``name`` (full or short name), else None."""
    for key in (name, _short(name)):
        if modules and key in modules and not isinstance(modules[key], nn.Module):
            return modules[key]
    return None


def _resolve_activation(value, modules):
    if not isinstance(value, str):
        return value
    cls = _lookup(value, modules) or getattr(nn, value, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelFileError(f"unknown activation {value!r} in a component's config",
                             expected="the name of a torch.nn module class (Softplus, ReLU, ...)", given=repr(value),
                             fix=f"pass modules={{{value!r}: YourActivation}} to load_model")
    return cls


def _call(factory, config: Mapping, what: str):
    try:
        return factory(**config)
    except Exception as e:  # noqa: BLE001 - re-raised with what was being rebuilt
        raise ModelFileError(f"rebuilding {what} failed", expected="a class or factory that takes the saved config",
                             given=f"{type(e).__name__}: {e}",
                             fix="pass the class that wrote this config, or an instance, in modules=") from e


def _missing_class(name: str, role: str | None, has_config: bool) -> ModelFileError:
    key = role or "<role>"
    fixes = [f"load_model(path, modules={{{key!r}: {_short(name)}(...)}}) with an instance"]
    if has_config:
        fixes.append(f"modules={{{_short(name)!r}: {_short(name)}}} with the class (called with its saved config)")
    err = ModelFileError(
        f"the model's {role or 'component'} is a custom class, {name}, which a model file does not hold",
        expected=f"the class {_short(name)} (or an instance) in modules=", given=f"no entry for {_short(name)!r}"
        + (f" or {role!r}" if role else ""), fix=" or ".join(fixes))
    err.missing = True  # something only the user can supply: load_model reports them all at once
    return err


def _all_missing(errors: list[ModelFileError]) -> ModelFileError:
    if len(errors) == 1:
        return errors[0]
    return ModelFileError(f"the model needs {len(errors)} things a model file does not hold: "
                          + "; ".join(str(e).splitlines()[0] for e in errors),
                          expected="each of them in modules= (by role or class name) or estimators=",
                          given="; ".join(e.given or "" for e in errors), fix="; ".join(e.fix or "" for e in errors))


def _build_tensor(p: Mapping, device) -> torch.Tensor:
    dtype = getattr(torch, str(p.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelFileError("a bad dtype in a distribution's parameters", expected="a torch dtype name",
                             given=repr(p.get("dtype")), fix="the file is damaged: save the model again")
    return torch.tensor(p["data"], dtype=torch.float64).to(dtype).reshape(p["shape"]).to(device)


def build_component(spec: Mapping, modules: Mapping | None = None, *, role: str | None = None, device=None):
    """Rebuild a component (weights freshly initialised) from :func:`component_spec`'s description.

    ``modules`` maps class names (short or qualified) to classes or factories, for custom
    classes and custom activations; ``role`` names the component in error messages;
    ``device``: where a distribution's parameters go (modules are built on the current default
    device; move them with ``.to``).
    Raises :class:`ModelFileError` naming a missing class and how to supply it.

    >>> from lagrangian_family.backends.torch import BernoulliMLPDecoder
    >>> dec = build_component(component_spec(BernoulliMLPDecoder(2, (1, 2, 2), hidden=(8,))))
    >>> type(dec).__name__, dec.x_shape
    ('BernoulliMLPDecoder', (1, 2, 2))
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("class"), str):
        raise ModelFileError("a bad component specification", expected="a dict with a 'class' name",
                             given=repr(spec)[:80], fix="the file is damaged: save the model again")
    name = spec["class"]
    config = spec.get("config")
    config = dict(config) if isinstance(config, Mapping) else None
    user = _lookup(name, modules)
    if spec.get("custom") or user is not None:
        if user is None:
            raise _missing_class(name, role, config is not None)
        return _call(user, config or {}, f"the {role or 'component'} {name}")
    if name == "DistributionPrior" and "distribution" in spec:
        from . import samples

        dist = build_component(spec["distribution"], modules, role=role, device=device)
        wrap = getattr(samples, "DistributionPrior", None)
        return wrap(dist) if wrap is not None else dist
    builtins = _builtins()
    if name in builtins:
        kw = {k: (_resolve_activation(v, modules) if k == "activation" else v) for k, v in (config or {}).items()}
        return _call(builtins[name], kw, f"the {role or 'component'} {name}")
    if name == "torch.nn.Sequential":
        return nn.Sequential(*[build_component(c, modules, role=role) for c in spec.get("children", [])])
    if name.startswith("torch.nn."):
        cls = getattr(nn, _short(name), None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return _call(cls, config or {}, f"the layer {name}")
    if name == "torch.distributions.Independent":
        base = build_component(spec["base"], modules, role=role, device=device)
        return torch.distributions.Independent(base, int(spec["reinterpreted_batch_ndims"]))
    if name.startswith("torch.distributions."):
        cls = getattr(torch.distributions, _short(name), None)
        if isinstance(cls, type) and issubclass(cls, Distribution):
            params = {k: _build_tensor(v, device) for k, v in spec.get("params", {}).items()}
            return _call(cls, params, f"the distribution {name}")
    raise _missing_class(name, role, config is not None)


# -- the file -------------------------------------------------------------------------------------

def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _digest(spec_text: str, tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256(spec_text.encode())
    for k in sorted(tensors):
        t = tensors[k]
        h.update(f"\0{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _write_file(path: Path, spec: Mapping, tensors: Mapping[str, torch.Tensor]) -> None:
    """Write the model file atomically (a temporary file in the same folder, then a rename)."""
    text = json.dumps(spec, allow_nan=True)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "spec": text, "tensors": dict(tensors),
               "sha256": _digest(text, tensors)}
    from lagrangian_family.files import atomic_write  # a temporary left by a kill is removed by the next save

    atomic_write(path, lambda f: torch.save(payload, f))


def _damaged(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path} is not a readable model file", expected=f"a file written by save_model ({FORMAT} "
                          f"version <= {FORMAT_VERSION})", given=why,
                          fix="save the model again, or point to the run folder's model.pt")


def _read_file(path: Path, map_location) -> tuple[dict, dict]:
    """(spec, tensors) of a model file; :class:`ModelFileError` if it is damaged or foreign."""
    try:
        with warnings.catch_warnings():  # a foreign file's pickle protocol: it is judged below, not warned about
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, KeyError,
            IndexError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise _damaged(path, f"torch.load failed: {type(e).__name__}: {first[:200]}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _damaged(path, f"a {type(payload).__name__} without the format tag {FORMAT!r}")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer lagrangian_family (format version {version})",
                             expected=f"format version <= {FORMAT_VERSION}", given=f"version {version!r}",
                             fix="upgrade lagrangian_family to read it")
    text, tensors = payload.get("spec"), payload.get("tensors")
    if not isinstance(text, str) or not isinstance(tensors, dict) or \
            not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise _damaged(path, "the specification or the tensors are missing")
    if payload.get("sha256") != _digest(text, tensors):
        raise _damaged(path, "the checksum does not match its contents (the file was modified or truncated)")
    try:
        spec = json.loads(text)
    except ValueError as e:  # pragma: no cover - the checksum matched, so the writer wrote it
        raise _damaged(path, f"the specification is not JSON: {e}") from e
    return spec, tensors


def _model_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ModelFileError("a model path is not a path", expected="a str or os.PathLike",
                             given=type(path).__name__, fix="pass e.g. 'runs/vae/model.pt' or the run folder")
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    return p


# -- saving ---------------------------------------------------------------------------------------

def _unwrap(loss_fn) -> CompiledObjective:
    if isinstance(loss_fn, Model):
        return loss_fn.loss_fn
    for attr in ("module", "_orig_mod"):  # DistributedDataParallel, torch.compile
        inner = getattr(loss_fn, attr, None)
        if isinstance(inner, CompiledObjective):
            return inner
    if not isinstance(loss_fn, CompiledObjective):
        raise ModelFileError("save_model saves a compiled objective", expected="the result of compile_objective or "
                             "Lagrangian.compile (or a Model)", given=type(loss_fn).__name__,
                             fix="pass the compiled loss: save_model(path, loss_fn)")
    return loss_fn


def _number(v):
    if isinstance(v, torch.Tensor):
        return float(v.detach())
    return float(v) if not isinstance(v, (int, bool)) else v


def _objective_spec(loss_fn: CompiledObjective) -> dict:
    from .lagrangian import CompiledLagrangian

    if isinstance(loss_fn, CompiledLagrangian):
        lag = loss_fn.lagrangian
        return {"kind": "lagrangian",
                "primal": str(lag.primal) if len(lag.primal) else None,
                "constraints": [{"divergence": str(c.divergence), "name": n}
                                for c, n in zip(lag.constraints, lag.names)]}
    if type(loss_fn) is not CompiledObjective:
        raise ModelFileError(f"save_model cannot record a {type(loss_fn).__name__}",
                             expected="a CompiledObjective or CompiledLagrangian", given=type(loss_fn).__name__,
                             fix="save the compiled objective it wraps")
    return {"kind": "objective", "heads": {h: str(c.objective) for h, c in loss_fn.classifications.items()}}


def save_model(path, loss_fn, *, x_range: tuple[float, float] | None = (0.0, 1.0), **metadata) -> Path:
    """Write a compiled objective (or Lagrangian, or a :class:`Model`) to one file; returns its path.

    ``path``: the file, or an existing folder (the file is then ``folder/model.pt``, the run
    folder layout that ``lagfam sample`` reads). ``x_range``: the range of the data, to which
    :meth:`Model.sample` clips decoder means and generator outputs (None: unbounded data).
    ``metadata``: JSON-serialisable facts to keep with the model (data set, steps, metrics);
    :func:`load_model` returns them as ``model.metadata``.

    Raises :class:`ModelFileError` when the folder does not exist or a value cannot be stored.
    The write is atomic: an interrupted save leaves an existing file as it was.
    """
    fn = _unwrap(loss_fn)
    p = _model_path(path)
    if not p.parent.is_dir():
        raise ModelFileError(f"cannot save the model to {p}: the folder {p.parent} does not exist",
                             expected="a path in an existing folder", given=str(p),
                             fix=f"create it first (mkdir -p {p.parent})")
    if x_range is not None:
        try:
            lo, hi = (float(v) for v in x_range)
        except (TypeError, ValueError) as e:
            raise ModelFileError("a bad x_range", expected="(low, high) numbers, or None", given=repr(x_range),
                                 fix="pass x_range=(0.0, 1.0)") from e
        if not lo < hi:
            raise ModelFileError("a bad x_range", expected="low < high", given=repr(x_range),
                                 fix="pass x_range=(0.0, 1.0)")
        x_range = (lo, hi)
    meta = _json_safe(metadata, "the metadata")
    c = fn.components
    prior = c.prior.obj
    ties = _shared_modules(fn)
    comps = {"encoder": component_spec(c.encoder, tied=_tied_in("encoder", ties, fn)),
             "decoder": component_spec(c.decoder, tied=_tied_in("decoder", ties, fn)),
             "prior": component_spec(prior)}
    ests = {}
    for term, est in zip(fn.terms, fn.estimators):
        critic = getattr(est, "critic", None)
        ests[term] = {"estimator": est.choice, "class": type(est).__name__,
                      "critic": component_spec(critic) if isinstance(critic, nn.Module) else None}
    options = dict(fn.compile_options)
    from lagrangian_family import __version__

    spec = {
        "objective": _objective_spec(fn),
        "params": {k: _number(v) for k, v in fn.defaults.items()},
        "components": comps,
        "estimators": ests,
        "compile": _json_safe(options, "the compile options"),
        "x_shape": list(fn.x_shape),
        "z_shape": list(c.z_shape),
        "dtype": str(c.dtype).removeprefix("torch."),
        "x_range": list(x_range) if x_range is not None else None,
        "metadata": meta,
        "versions": {"lagrangian_family": __version__, "torch": torch.__version__},
    }
    if ties:
        spec["ties"] = ties
    tensors = {k: v.detach().cpu().clone() for k, v in fn.state_dict().items()}
    _write_file(p, spec, tensors)
    return p


def _inside(name: str, outer: str) -> bool:
    return name.startswith(outer + ".")


def _shared_modules(root: nn.Module) -> list[list[str]]:
    """The submodules that appear under several names (a Q network on the discriminator's trunk):
    ``[[owner, other names...], ...]``, the outermost shared modules only. The owner is the name
    under a critic (``estimators.``) where there is one, since the critic's spec rebuilds the
    module as it is (spectral normalisation, dropout), else the first name."""
    names: dict[int, list[str]] = {}
    for name, m in root.named_modules(remove_duplicate=False):
        if name:
            names.setdefault(id(m), []).append(name)
    groups = [ns for ns in names.values() if len(ns) > 1]
    every = [n for g in groups for n in g]
    groups = [g for g in groups if not any(_inside(g[0], o) for o in every)]
    return [sorted(g, key=lambda n: not n.startswith("estimators.")) for g in groups]


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    owner = root.get_submodule(parent) if parent else root
    if owner.get_submodule(leaf) is not module:
        setattr(owner, leaf, module)


def _tied_in(role: str, ties: list[list[str]], root: nn.Module) -> dict[str, nn.Module]:
    """{name inside ``role``: the owner's module} for the shared modules ``role`` does not own."""
    return {n[len(role) + 1:]: root.get_submodule(owner) for owner, *others in ties for n in others
            if _inside(n, role)}


def _tie(root: nn.Module, ties, path: Path) -> None:
    """Make the saved shared submodules one object again: each other name gets the owner's module."""
    ok = isinstance(ties, list) and all(
        isinstance(g, list) and len(g) >= 2 and all(isinstance(n, str) and n for n in g) and len(set(g)) == len(g)
        and not any(_inside(a, b) for a in g for b in g) for g in ties)
    if not ok:
        raise _damaged(path, f"its shared modules are not lists of two or more distinct module names: {ties!r}")
    try:
        for owner, *others in ties:
            module = root.get_submodule(owner)
            for name in others:
                _set_submodule(root, name, module)
    except (AttributeError, TypeError, ValueError) as e:
        raise _damaged(path, f"its shared modules ({ties!r}) are not in the rebuilt model: {e}") from e
    if ties:
        root.forget_players()


# -- loading --------------------------------------------------------------------------------------

def _device_of(map_location) -> torch.device:
    try:
        return torch.device(map_location)
    except (TypeError, RuntimeError) as e:
        raise ModelFileError("a bad map_location", expected="a device: 'cpu', 'cuda', 'cuda:1' or a torch.device",
                             given=repr(map_location), fix="pass map_location='cpu'") from e


def _given_instance(modules: Mapping | None, key: str):
    if modules and key in modules:
        v = modules[key]
        if isinstance(v, (nn.Module, Distribution)):
            return v
        if callable(v):
            return v
    return None


def _component(role: str, spec: Mapping, modules: Mapping | None, device=None):
    given = _given_instance(modules, role)
    if isinstance(given, (nn.Module, Distribution)):
        return given
    if given is not None:  # a class or factory by role: called with the saved config
        return _call(given, spec.get("config") or {}, f"the {role}")
    return build_component(spec, modules, role=role, device=device)


def _prior(spec: Mapping, prior, modules, data_dir, device):
    if prior is not None:
        if isinstance(prior, (nn.Module, Distribution)) or callable(getattr(prior, "sample", None)):
            return prior
        if spec.get("class") != "DataSamplerPrior":
            raise ModelFileError("prior= gives images, but the model's prior is no data domain",
                                 expected="images only for a model whose prior is a DataSamplerPrior (CycleGAN, "
                                 "DiscoGAN)", given=f"images for a {spec.get('class')} prior",
                                 fix="drop prior= (the prior is rebuilt from the file), or pass a prior object")
        return _components.DataSamplerPrior(torch.as_tensor(prior, dtype=torch.float32),
                                            source=(spec.get("config") or {}).get("source"))
    if spec.get("class") == "DataSamplerPrior" and _lookup("DataSamplerPrior", modules) is None \
            and not _given_instance(modules, "prior"):
        source = (spec.get("config") or {}).get("source")
        if source is None:
            raise ModelFileError(
                "the model's prior is a set of images (a second data domain) that the model file does not hold",
                expected="the images, since the prior was saved without a source description",
                given="no prior= and no source in the file",
                fix="load_model(path, prior=images) with the second domain's images as an (n, d) array, or save "
                    "with DataSamplerPrior(images, source={'dataset': ..., 'split': ..., 'transform': ...})")
        from lagrangian_family.data_sources import resolve_source

        return _components.DataSamplerPrior(torch.from_numpy(resolve_source(source, data_dir)), source=source)
    return _component("prior", spec, modules, device)


def load_model(path, *, modules: Mapping | None = None, prior=None, map_location="cpu", data_dir=None,
               estimators: Mapping | None = None) -> Model:
    """Rebuild a model saved by :func:`save_model`; returns a :class:`Model`.

    ``path``: the model file or its run folder (``folder/model.pt``). ``modules``: what a model
    file cannot hold, by role (``{"encoder": MyEncoder(...)}``, also ``"decoder"``, ``"prior"``
    and ``"critic:<term>"`` for a term's critic) or by class name (``{"MyEncoder": MyEncoder}``:
    called with the saved ``config``); a custom class without one raises a
    :class:`ModelFileError` naming it. ``prior``: the second domain's images (an ``(n, ...)``
    array) or prior object, for a data-backed prior; otherwise its saved ``source`` is resolved,
    with ``data_dir`` as the data folder. ``map_location``: the device to load onto.
    ``estimators``: {term: estimator} for terms whose estimator was a custom instance or factory.

    Loading leaves the global random state as it was. The weights must fit the rebuilt
    components exactly, else :class:`ModelFileError` says which do not.
    """
    p = _model_path(path)
    if not p.exists():
        given = f"a folder without {MODEL_FILE}" if Path(path).is_dir() else "missing"
        raise ModelFileError(f"no model file at {p}", expected=f"a model file, or a run folder holding {MODEL_FILE}",
                             given=f"{path} ({given})",
                             fix="pass the run folder that training wrote, or the model file itself")
    if not p.is_file():
        raise ModelFileError(f"{p} is not a file", expected="a model file", given=str(p), fix="pass the model file")
    if modules is not None and not isinstance(modules, Mapping):
        raise ModelFileError("modules= is not a mapping", expected="a dict {role or class name: instance or class}",
                             given=type(modules).__name__, fix="pass modules={'encoder': MyEncoder(...)}")
    device = _device_of(map_location)
    spec, tensors = _read_file(p, device)
    try:
        dtype = getattr(torch, spec["dtype"])
        obj_spec, comp_specs, est_specs = spec["objective"], spec["components"], spec["estimators"]
        options, params = spec["compile"], spec["params"]
    except (KeyError, AttributeError, TypeError) as e:
        raise _damaged(p, f"the specification lacks {e}") from e
    missing: list[ModelFileError] = []

    def attempt(make):
        try:
            return make()
        except ModelFileError as e:
            if not getattr(e, "missing", False):
                raise
            missing.append(e)
            return None

    with torch.random.fork_rng(devices=[]):
        enc = attempt(lambda: _component("encoder", comp_specs["encoder"], modules))
        dec = attempt(lambda: _component("decoder", comp_specs["decoder"], modules))
        pri = attempt(lambda: _prior(comp_specs["prior"], prior, modules, data_dir, device))
        critics, choices = {}, {}
        for term, e in est_specs.items():
            given = _given_instance(modules, _CRITIC + term)
            if isinstance(given, nn.Module):
                critics[term] = given
            elif e.get("critic") is not None:
                critics[term] = attempt(lambda t=term, c=e["critic"]: _component(_CRITIC + t, c, modules))
            if estimators and term in estimators:
                choices[term] = estimators[term]
            elif e.get("estimator") is not None:
                choices[term] = e["estimator"]
            else:
                err = ModelFileError(
                    f"the estimator of {term} was a custom {e.get('class')}, which a model file does not hold",
                    expected=f"an estimator for {term}", given=f"no entry for {term!r} in estimators=",
                    fix=f"load_model(path, estimators={{{term!r}: {e.get('class')}(...)}}), or register it with "
                        "register_estimator and compile with its name")
                missing.append(err)
        if missing:
            raise _all_missing(missing)
        for m in (enc, dec, pri, *critics.values()):
            if isinstance(m, nn.Module):
                m.to(device=device, dtype=dtype)
        kw = dict(encoder=enc, decoder=dec, prior=pri, critics=critics or None, estimators=choices or None,
                  defaults=params, decoder_sample=options.get("decoder_sample", "sample"),
                  mmd_kernel=options.get("mmd_kernel", "paper"), mmd_biased=options.get("mmd_biased", True),
                  critic_hidden=options.get("critic_hidden"), fold_kl=options.get("fold_kl", True))
        x_shape = tuple(spec.get("x_shape", ()))
        loss_fn = _compile(obj_spec, kw)
        if x_shape and tuple(loss_fn.x_shape) != x_shape:
            loss_fn = _compile(obj_spec, {**kw, "example_x": torch.zeros(2, *x_shape, dtype=dtype, device=device)})
    loss_fn.to(device=device)
    _tie(loss_fn, spec.get("ties") or [], p)
    _load_weights(loss_fn, tensors, p)
    return Model(loss_fn, metadata=spec.get("metadata") or {},
                 x_range=tuple(spec["x_range"]) if spec.get("x_range") is not None else None)


def _compile(obj_spec: Mapping, kw: dict) -> CompiledObjective:
    from .lagrangian import Lagrangian

    kind = obj_spec.get("kind")
    if kind == "objective":
        return CompiledObjective(dict(obj_spec["heads"]), **kw)
    if kind == "lagrangian":
        cons = [(c["divergence"], None, c["name"]) for c in obj_spec["constraints"]]
        return Lagrangian(obj_spec.get("primal"), cons).compile(**kw)
    raise ModelFileError("a model file of an unknown kind", expected="'objective' or 'lagrangian'", given=repr(kind),
                         fix="upgrade lagrangian_family, or save the model again")


def _load_weights(loss_fn: nn.Module, tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    want = loss_fn.state_dict()
    missing = sorted(set(want) - set(tensors))
    extra = sorted(set(tensors) - set(want))
    bad = sorted(k for k in set(want) & set(tensors) if tuple(want[k].shape) != tuple(tensors[k].shape))
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append("not in the file: " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
        if extra:
            parts.append("not in the model: " + ", ".join(extra[:6]) + (" ..." if len(extra) > 6 else ""))
        if bad:
            parts.append("of another shape: " + ", ".join(
                f"{k} {tuple(tensors[k].shape)} vs {tuple(want[k].shape)}" for k in bad[:6]))
        raise ModelFileError(f"the weights in {path} do not fit the rebuilt model", expected="the same components "
                             "as when the model was saved", given="; ".join(parts),
                             fix="pass in modules= the same classes, built with the same arguments, as at saving")
    loss_fn.load_state_dict(dict(tensors))


# -- the model ------------------------------------------------------------------------------------

class Model(nn.Module):
    """A trained model: the compiled loss (``loss_fn``) and what a researcher does with it.

    ``sample(n)``: x ~ p(x), as decoder means (or the generator's output) of z ~ p(z);
    ``reconstruct(x)``: decode(encode(x)); ``encode(x)``: the encoder's mean (or output);
    ``decode(z)``: the decoder's mean (or output); ``translate(z)``: decode images of the second
    domain, where the prior is one (CycleGAN, DiscoGAN). Outputs have shape ``(n, *x_shape)``
    (``(n, *z_shape)`` for codes), are computed without gradients, in eval mode (each
    submodule's mode is restored after), and are clipped to ``x_range`` where one is known.
    Calling the model is calling its loss: ``model(x, beta=4.0)``; train it with
    ``Trainer(model.loss_fn, data)``. ``metadata``: what :func:`save_model` stored.

    >>> import torch
    >>> from lagrangian_family.backends.torch import (compile_objective, GaussianMLPEncoder,
    ...     BernoulliMLPDecoder, StandardNormalPrior)
    >>> model = Model(compile_objective("vae", encoder=GaussianMLPEncoder(6, 2, hidden=(8,)),
    ...     decoder=BernoulliMLPDecoder(2, 6, hidden=(8,)), prior=StandardNormalPrior(2)))
    >>> x = model.sample(4, seed=0)
    >>> tuple(x.shape), bool(((x >= 0) & (x <= 1)).all()), tuple(model.encode(x).shape)
    ((4, 6), True, (4, 2))
    """

    def __init__(self, loss_fn: CompiledObjective, *, metadata: Mapping | None = None,
                 x_range: tuple[float, float] | None = (0.0, 1.0)):
        super().__init__()
        self.loss_fn = _unwrap(loss_fn)
        self.metadata = dict(metadata or {})
        self.x_range = tuple(x_range) if x_range is not None else None

    # -- what it is made of ---------------------------------------------------------------------
    @property
    def encoder(self) -> nn.Module:
        """The encoder q(z|x)."""
        return self.loss_fn.components.encoder

    @property
    def decoder(self) -> nn.Module:
        """The decoder p(x|z) (or generator)."""
        return self.loss_fn.components.decoder

    @property
    def prior(self):
        """The prior object (a module, a distribution or a sampler)."""
        return self.loss_fn.components.prior.obj

    @property
    def x_shape(self) -> tuple[int, ...]:
        """The shape of one example of x."""
        return tuple(self.loss_fn.x_shape)

    @property
    def z_shape(self) -> tuple[int, ...]:
        """The shape of one code z (an image's shape when the prior is a second data domain)."""
        return tuple(self.loss_fn.components.z_shape)

    @property
    def prior_is_domain(self) -> bool:
        """True when the prior is known only through samples (a second data domain)."""
        return not self.loss_fn.components.prior.explicit

    def forward(self, x, params: Mapping | None = None, **kwargs):
        """The compiled loss on a batch (see :class:`~.compile.CompiledObjective`)."""
        return self.loss_fn(x, params, **kwargs)

    def save(self, path, **metadata) -> Path:
        """:func:`save_model` with this model's ``x_range`` and metadata (updated by ``metadata``)."""
        return save_model(path, self.loss_fn, x_range=self.x_range, **{**self.metadata, **metadata})

    # -- helpers --------------------------------------------------------------------------------
    def _where(self) -> tuple[torch.device, torch.dtype]:
        return self.loss_fn.components.device, self.loss_fn.components.dtype

    def _batch(self, t, shape: tuple[int, ...], what: str) -> torch.Tensor:
        """``t`` as a floating tensor ``(n, *shape)`` on the model's device (flat rows reshaped)."""
        device, dtype = self._where()
        want = "(n" + "".join(f", {d}" for d in shape) + ")"
        try:
            t = torch.as_tensor(t)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ObjectiveError(f"{what} is not an array of numbers", expected=f"a tensor or array of shape {want}",
                                 given=type(t).__name__, fix="pass a torch.Tensor or a numpy array") from e
        if t.dtype.is_complex or t.dtype == torch.bool:
            raise ObjectiveError(f"{what} has dtype {t.dtype}", expected="real numbers", given=str(t.dtype),
                                 fix="convert it: t.float()")
        t = t.to(device=device, dtype=dtype)
        size = math.prod(shape)
        if tuple(t.shape) == tuple(shape):
            t = t.unsqueeze(0)
        if t.dim() >= 1 and t.shape[0] > 0 and t[0].numel() == size:
            return t.reshape(t.shape[0], *shape)
        raise ObjectiveError(f"{what} has shape {tuple(t.shape)}", expected=f"{want}, or flat rows (n, {size})",
                             given=f"shape {tuple(t.shape)}", fix=f"reshape it to {want}")

    def _out(self, d, mean: bool, role: str) -> torch.Tensor:
        if isinstance(d, Distribution):
            if not mean:
                return d.sample()
            try:
                return d.mean
            except NotImplementedError as e:
                raise ObjectiveError(f"the {role}'s distribution {type(d).__name__} has no mean",
                                     expected="a distribution with a mean", given=type(d).__name__,
                                     fix="pass mean=False to draw a sample instead") from e
        return d

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.x_range is None else x.clamp(*self.x_range)

    def _run(self, fn, seed: int | None = None):
        devices = []
        dev = self._where()[0]
        if dev.type == "cuda":
            devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
        with torch.no_grad(), _EvalMode(self.loss_fn):
            if seed is None:
                return fn()
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(int(seed))
                return fn()

    # -- what it does -----------------------------------------------------------------------------
    def encode(self, x, *, mean: bool = True) -> torch.Tensor:
        """The code of each x: the encoder's mean (``mean=False``: a sample), or its output."""
        x = self._batch(x, self.x_shape, "x")
        return self._run(lambda: self._out(self.encoder(x), mean, "encoder"))

    def decode(self, z, *, mean: bool = True) -> torch.Tensor:
        """The x of each code z: the decoder's mean (``mean=False``: a sample), or its output."""
        z = self._batch(z, self.z_shape, "z")
        return self._run(lambda: self._clip(self._out(self.decoder(z), mean, "decoder")))

    def reconstruct(self, x, *, mean: bool = True) -> torch.Tensor:
        """decode(encode(x)): the decoder's mean at the encoder's mean (``mean=False``: samples)."""
        x = self._batch(x, self.x_shape, "x")

        def go():
            z = self._out(self.encoder(x), mean, "encoder")
            return self._clip(self._out(self.decoder(z), mean, "decoder"))

        return self._run(go)

    def sample(self, n: int, *, mean: bool = True, seed: int | None = None) -> torch.Tensor:
        """``n`` samples of p(x): z ~ p(z), then the decoder's mean (``mean=False``: x ~ p(x|z)) or
        the generator's output, shape ``(n, *x_shape)``. With a second data domain as the prior,
        these are the translations of ``n`` random images of that domain. ``seed``: draw from a
        generator seeded so, leaving the global random state untouched."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ObjectiveError("a bad number of samples", expected="an integer n >= 1", given=repr(n),
                                 fix="pass e.g. model.sample(64)")

        def go():
            z = self.loss_fn.components.prior.sample(n)
            z = z.to(self._where()[0])
            return self._clip(self._out(self.decoder(z), mean, "decoder"))

        return self._run(go, seed)

    def translate(self, z, *, mean: bool = True) -> torch.Tensor:
        """The translation of images of the second domain (the prior's samples) into x: the
        decoder (CycleGAN's and DiscoGAN's generator from the second domain)."""
        if not self.prior_is_domain:
            raise ObjectiveError("translate is for models whose prior is a second data domain",
                                 expected="a prior known only through samples (DataSamplerPrior)",
                                 given=f"the prior {type(self.prior).__name__}", fix="use model.decode(z)")
        return self.decode(z, mean=mean)

    def extra_repr(self) -> str:
        return f"x_shape={self.x_shape}, z_shape={self.z_shape}, x_range={self.x_range}"
