"""L-inf attacks: one file per attack, shared machinery beside them.

The contract (``base.py``):

- ``attack(model, x, y) -> x_adv`` on tensors; graph-safe (usable inside
  ``train_step`` or any ``tf.function``) exactly when the class says
  ``in_graph = True``. Eager-only attacks (Square, RayS, AutoAttack) refuse to
  run inside a graph, and `check_trainable_attack` refuses them as training
  attacks.
- ``attack.perturb(model, x, y, batch_size=256, jit_compile=False, verbose=0)``
  on arrays returns the adversarial images (numpy, in the eps-ball and [0, 1]).
- ``attack.run(...)`` (same arguments) returns an `AttackResult`: ``x_adv``,
  ``success`` (per-example: a correctly classified point now misclassified)
  and ``extras``, a dict of the attack's other outputs (Square: ``queries``;
  RayS: ``distances``, ``mean_distance``, ``queries``; AutoAttack: ``report``,
  ``robust``, ``broken_by``). There are no ``last_*`` attributes.
- Both check their inputs as ``fit`` does (images in [0, 1], finite, integer
  labels ``(N,)``) and refuse a classifier returning probabilities, with one
  `atalp_keras.errors.UsageError` line. ``verbose=1`` shows a Keras
  ``Progbar`` on stderr (per AutoAttack stage for AutoAttack); where stderr
  is not a terminal (a log file), a line a minute and one at the end.
- ``AutoAttack(..., resume_file=path)`` keeps its state in ``path`` after
  every piece of ``save_every`` points of a stage; a rerun of the same call
  (model weights, points, settings, batch size, XLA) starts at the first
  piece not finished.
- Option names are uniform: ``num_steps``, ``step_size``, ``restarts``,
  ``n_queries``, ``n_target_classes``, ``seed``.
- Graph attacks traced inside ``with unrolled_steps(True):`` write their (at
  most 20) steps out in the graph; elsewhere they trace a ``tf.while_loop``.
  ``train_step``/``test_step`` and ``perturb(..., jit_compile=True)`` unroll
  (under XLA on CPU the loop costs about 3x); an attack called inside your own
  XLA-compiled ``tf.function`` loops unless you enter the context around it.

``get_attack(name, **kwargs)`` builds one by registry name (the names
``evaluate.py`` accepts). Shared machinery: ``primitives.py`` (checks,
projection), ``batching.py`` (``predict_logits`` and batch iteration),
``keys.py`` (per-example keyed randomness), ``rounds.py`` (restarts / target
rounds), ``progress.py``.
"""

from atalp_keras.attacks.apgd import APGDAttack, APGDDLRAttack, APGDTAttack
from atalp_keras.attacks.autoattack import AutoAttack, AutoAttackFast
from atalp_keras.attacks.base import (Attack, AttackResult, check_attack_inputs, check_eps,
                                      check_logits_classifier, project_linf)
from atalp_keras.attacks.batching import predict_logits
from atalp_keras.attacks.fab import FABAttack
from atalp_keras.attacks.fgsm import FGSMAttack
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.attacks.primitives import unrolled_steps
from atalp_keras.attacks.rays import RaySAttack
from atalp_keras.attacks.square import SquareAttack
from atalp_keras.attacks.trades import TRADESAttack
from atalp_keras.errors import UsageError

ATTACKS = {
    "fgsm": FGSMAttack,
    "pgd": PGDAttack,
    "trades": TRADESAttack,
    "apgd-ce": APGDAttack,
    "apgd-dlr": APGDDLRAttack,
    "apgd-t": APGDTAttack,
    "fab-t": FABAttack,
    "square": SquareAttack,
    "rays": RaySAttack,
    "autoattack": AutoAttack,
    "autoattack-fast": AutoAttackFast,
}


def get_attack(name, **kwargs):
    """Builds the attack registered as ``name`` with its keyword arguments."""
    if name not in ATTACKS:
        raise UsageError(
            f"Unknown attack {name!r}. Expected one of: {', '.join(sorted(ATTACKS))}. "
            f"Received: attack={name!r}"
        )
    return ATTACKS[name](**kwargs)


def check_trainable_attack(*attacks):
    """Refuses attacks that cannot run inside ``train_step`` / ``test_step``.

    Args:
        *attacks: `Attack` objects (None entries mean no attack and pass).

    Raises:
        UsageError: For an eager-only attack (``in_graph = False``), naming
            the attacks that can train.
    """
    for attack in attacks:
        if attack is not None and not getattr(attack, "in_graph", True):
            trainable = ", ".join(n for n, cls in ATTACKS.items() if cls.in_graph)
            name = getattr(attack, "name", type(attack).__name__)
            raise UsageError(
                f"The {name!r} attack runs only eagerly and cannot be a training attack. "
                f"Expected one of: {trainable}. Received: attack={name!r}")


def serialize_attack(attack):
    """``{"name": ..., "config": ...}`` or None."""
    if attack is None:
        return None
    return {"name": attack.name, "config": attack.get_config()}


def deserialize_attack(config):
    if config is None:
        return None
    return get_attack(config["name"], **config["config"])
