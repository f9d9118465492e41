"""Attack suites: parsing ``--attacks`` specs and building the attacks from
the registry (``atalp_keras.attacks.ATTACKS``), so every registered attack
plugs in by name.

Suite-wide settings (``num_steps``, ``step_size``, ``restarts``,
``n_queries``) go to each attack whose constructor takes them, except those an
attack declares fixed (``suite_fixed``: FGSM is one step of size eps);
per-attack options override them (``pgd:num_steps=50:restarts=5``)::

    requests = parse_attack_list("fgsm,pgd:restarts=5")
    attacks = build_attacks(requests, eps_values=[8 / 255], num_steps=20)
"""

import inspect

from atalp_keras import attacks as attack_registry
from atalp_keras.attacks.base import check_eps
from atalp_keras.errors import UsageError
from atalp_keras.evaluation.report import CLEAN
# Evaluation defaults that differ from an attack's constructor default
# (applied below suite-wide settings and per-attack options).
EVALUATION_DEFAULTS = {"pgd": {"num_steps": 20}}


def _parse_value(text):
    """Option values: ints, floats, fractions (``8/255``), booleans, strings."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if "/" in text:
        numerator, _, denominator = text.partition("/")
        try:
            return float(numerator) / float(denominator)
        except (ValueError, ZeroDivisionError):
            pass
    return text.strip()


def parse_attack_list(spec):
    """Parses ``"fgsm,pgd:num_steps=50:restarts=5"`` into requests.

    Args:
        spec: A comma-separated string, or a list of items. An item is a
            registry name, optionally followed by ``:key=value`` options.

    Returns:
        A list of ``(name, options)`` pairs, in order.

    Raises:
        UsageError: For an empty list, an unknown attack name or a malformed
            option. The message lists the registered attacks.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items if item and item.strip()]
    if not items:
        raise UsageError(f"No attacks given. Expected a comma-separated list "
                         f"of: {', '.join(_known_attacks())}. Received: "
                         f"{spec!r}")
    requests = []
    for item in items:
        name, *parts = item.split(":")
        name = name.strip().lower()
        if name != CLEAN and name not in attack_registry.ATTACKS:
            raise UsageError(f"Unknown attack {name!r}. Expected one of: "
                             f"{', '.join(_known_attacks())}. Received: "
                             f"attacks={item!r}")
        options = {}
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(
                    f"Attack options are written name:key=value[:key=value],"
                    f" e.g. pgd:num_steps=50. Received: {item!r}")
            options[key.strip()] = _parse_value(value)
        _check_options(name, options)
        requests.append((name, options))
    return requests


def _check_options(name, options):
    params = _constructor_params(name) if name != CLEAN else set()
    if params is None:
        return
    unknown = sorted(set(options) - params)
    if unknown:
        raise UsageError(
            f"Attack {name!r} takes no option(s) {unknown}. It takes: "
            f"{', '.join(sorted(params - {'eps'})) or 'none'}.")


def _known_attacks():
    return [CLEAN] + sorted(attack_registry.ATTACKS)


def _constructor_params(name):
    cls = attack_registry.ATTACKS.get(name)
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return None  # Unknown signature: pass explicit options only.
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return {p for p in params if p != "self"}


def _suite_kwargs(name, params, settings):
    """The suite-wide settings this attack takes (None = keep its default)."""
    fixed = getattr(attack_registry.ATTACKS[name], "suite_fixed", ())
    kwargs = dict(EVALUATION_DEFAULTS.get(name, {}))
    for key, value in settings.items():
        if value is None or key in fixed:
            continue
        if (params is None and key == "seed") or (params is not None and key in params):
            kwargs[key] = value
    return kwargs


def build_attacks(requests, eps_values, num_steps=None, step_size=None,
                  restarts=None, queries=None, seed=0):
    """Instantiates every requested attack at every eps.

    Args:
        requests: ``(name, options)`` pairs (see `parse_attack_list`), or
            registry names.
        eps_values: L-inf radii on the [0, 1] scale.
        num_steps, step_size, restarts, queries: Suite-wide settings, given to
            each attack whose constructor takes them (``queries`` as its
            ``n_queries``); None leaves the attack's own default
            (``EVALUATION_DEFAULTS``: PGD takes 20 steps). Per-attack options
            win over them.
        seed: Seed of the attacks' random starts.

    Returns:
        A list of `Attack` objects (``None`` for the clean entry ``none``),
        grouped by attack, then eps.

    Raises:
        UsageError: For a bad eps, an unknown attack, or an option the attack
            does not take.
    """
    eps_values = [check_eps(e, "eps") for e in eps_values]
    if not eps_values:
        raise UsageError("Give at least one eps value. Received: eps=[]")
    settings = {"num_steps": num_steps, "step_size": step_size, "restarts": restarts,
                "n_queries": queries, "seed": seed}
    built = []
    for request in requests:
        name, options = (request, {}) if isinstance(request, str) else request
        if name == CLEAN:
            built.append(None)
            continue
        if name not in attack_registry.ATTACKS:
            raise UsageError(f"Unknown attack {name!r}. Expected one of: "
                             f"{', '.join(_known_attacks())}.")
        kwargs = _suite_kwargs(name, _constructor_params(name), settings)
        _check_options(name, options)
        kwargs.update(options)
        for eps in eps_values:
            built.append(attack_registry.get_attack(name, **{**kwargs, "eps": eps}))
    return built
