"""The attack contract: the base class, its result object and the checks made
where a classifier and user arrays enter an attack.

An attack is a callable object. ``attack(model, x, y) -> x_adv`` on tensors is
graph-safe when the class says ``in_graph = True`` (it can then run inside
``train_step``, any ``tf.function`` or, on JAX, a ``jax.jit`` that passes the
attack's state in: see `Attack.seed_for`). On arrays,
``perturb`` returns the adversarial images and ``run`` returns an `AttackResult`
with them, the per-example success and the attack's other outputs (``extras``).
"""

import dataclasses

import keras
import numpy as np
from keras import ops
from keras.src.backend.common.stateless_scope import in_stateless_scope

from atalp_keras import backend
from atalp_keras.attacks import batching
from atalp_keras.attacks.primitives import (check_eps, check_fraction,  # noqa: F401
                                            check_positive_int, input_gradient,
                                            model_logits, per_example, project_linf,
                                            unrolled_steps)
from atalp_keras.attacks.progress import Progress
from atalp_keras.errors import UsageError

PROBE_SIZE = 32


@dataclasses.dataclass
class AttackResult:
    """What one attack run on arrays produced.

    Attributes:
        x_adv: Adversarial images, float32, same shape as the input.
        success: Per-example bool: a correctly classified point now
            misclassified (targeted attacks: now classified as its target).
        extras: The attack's other outputs, by name (e.g. ``queries``,
            ``distances``, ``mean_distance``, ``report``); documented on
            each attack class.
    """

    x_adv: np.ndarray
    success: np.ndarray
    extras: dict = dataclasses.field(default_factory=dict)


def check_logits_classifier(classifier, x_probe, batch_size=256):
    """Refuses a classifier that returns probabilities instead of logits.

    Decided by behaviour, not by the last layer: on ``x_probe`` every output
    row being non-negative and summing to 1 means a softmax (a ``Softmax``
    layer, ``activation="softmax"``, ``tf.nn.softmax`` or ``ops.softmax``).

    Args:
        classifier: Callable ``classifier(x, training=False) -> outputs``.
        x_probe: A few valid images.
        batch_size: Examples per call.

    Returns:
        The probe's outputs (numpy ``(n, K)``).

    Raises:
        UsageError: For probability outputs.
    """
    out = batching.predict_logits(classifier, x_probe, batch_size).astype(np.float64)
    if out.size and np.all(out >= 0.0) and np.allclose(out.sum(-1), 1.0, atol=1e-3):
        raise UsageError(
            f"The classifier returns probabilities, not logits: on {len(out)} probe images "
            "every output row is non-negative and sums to 1. Attacks (and AT+ALP) need "
            "logits: remove the final softmax and apply it only when serving.")
    return out


def check_attack_inputs(classifier, x, y, batch_size=256):
    """The checks at every eager attack entry point, the shared validator
    ``fit`` uses (``data.check_images`` / ``data.check_labels``).

    Images ``(N, H, W, C)`` finite and in [0, 1], integer labels ``(N,)`` in
    ``[0, K)`` with ``K`` the classifier's outputs, and a classifier that
    returns logits.

    Returns:
        ``(x, y)`` as float32 / int32 numpy arrays.

    Raises:
        UsageError: One line naming the problem (never the array).
    """
    from atalp_keras.data import check_images, check_labels

    x = check_images(x)
    y = check_labels(y, num_images=len(x))
    num_classes = check_logits_classifier(classifier, x[:PROBE_SIZE], batch_size).shape[-1]
    return x, check_labels(y, num_classes=num_classes)


class Attack:
    """Base class of the package's attacks.

    Subclasses implement ``__call__(model, x, y)`` (graph-safe if
    ``in_graph``) and ``get_config()``; they inherit ``perturb`` and ``run``
    (compiled, batched, on arrays), or override ``_generate`` when they run
    outside the graph.

    Args:
        eps: L-inf radius on the [0, 1] scale.
        seed: Optional int seeding the attack's ``keras.random.SeedGenerator``.
    """

    name = "attack"
    in_graph = True      # can run inside train_step / a tf.function
    targeted = False

    def __init__(self, eps, seed=None):
        self.eps = check_eps(eps, "eps")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._compiled = {}

    def __call__(self, model, x, y):
        raise NotImplementedError

    def seed_for(self, x):
        """The attack's ``keras.random.SeedGenerator``, to draw noise for ``x``.

        Drawing advances the generator by assigning its state. On JAX, inside a
        ``jax.jit`` that assignment must land in a ``keras.StatelessScope``
        (what `perturb`, ``ATALPModel.train_step`` and
        `atalp_keras.backend.compiled` with ``stateful=lambda: (model,
        attack.seed_generator)`` provide); in a bare ``jax.jit`` it would leak
        a tracer into the attack and break its next call, so it is refused.

        Raises:
            UsageError: On JAX, when traced outside any ``StatelessScope``.
        """
        if (backend.NAME == "jax" and not backend.executing_eagerly(x)
                and not in_stateless_scope()):
            raise UsageError(
                f"The {self.name!r} attack draws random numbers, which under JAX advance "
                "its keras.random.SeedGenerator: inside jax.jit call it in a "
                "keras.StatelessScope that maps attack.seed_generator.state (or through "
                "atalp_keras.backend.compiled(..., stateful=lambda: (model, "
                "attack.seed_generator))), or use perturb() on arrays.")
        return self.seed_generator

    def get_config(self):
        return {"eps": self.eps, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def describe(self):
        """The settings a robust-accuracy number must be reported with."""
        config = self.get_config()
        config.pop("seed", None)
        return {"attack": self.name, **config}

    def perturb(self, model, x, y, batch_size=256, jit_compile=False, verbose=0):
        """Runs the attack on arrays in batches, compiled once per model.

        Args:
            model: Callable ``model(x, training=False) -> logits``.
            x: Images, float in [0, 1], shape ``(N, H, W, C)``.
            y: Integer labels (target labels for targeted attacks), ``(N,)``.
            batch_size: Examples per compiled call.
            jit_compile: Compile the attack with XLA (where it supports it).
            verbose: 1 shows a progress bar on stderr.

        Returns:
            A numpy array of adversarial images, same shape as ``x``.

        Raises:
            UsageError: For images outside [0, 1], NaN pixels, labels that are
                not class indices, or a classifier returning probabilities.
        """
        x, y = check_attack_inputs(model, x, y, batch_size)
        return self._generate(model, x, y, batch_size, jit_compile, None, verbose)[0]

    def run(self, model, x, y, batch_size=256, jit_compile=False, verbose=0):
        """Like `perturb`, returning an `AttackResult` (images, success, extras)."""
        x, y = check_attack_inputs(model, x, y, batch_size)
        x_adv, extras = self._generate(model, x, y, batch_size, jit_compile, None, verbose)
        success = extras.pop("success", None)
        if success is None:
            success = self._success(model, x, y, x_adv, batch_size)
        return AttackResult(x_adv=x_adv, success=np.asarray(success, bool), extras=extras)

    def _success(self, model, x, y, x_adv, batch_size):
        clean = batching.predict_classes(model, x, batch_size)
        adv = batching.predict_classes(model, x_adv, batch_size)
        if self.targeted:
            return (clean != y) & (adv == y)
        return (clean == y) & (adv != y)

    def _generate(self, model, x, y, batch_size, jit_compile, example_ids, verbose):
        """Adversarial images and extras for validated arrays (graph attacks)."""
        key = (id(model), bool(jit_compile), x.shape[1:])
        if key not in self._compiled:
            # One trace per model and image shape, whatever the batch size
            # (on JAX: per batch shape).
            signature = [((None,) + x.shape[1:], "float32"), ((None,), "int32")]
            def attack(xb, yb):
                with unrolled_steps(jit_compile):
                    return self(model, xb, yb)
            self._compiled[key] = backend.compiled(
                attack, signature, jit_compile=jit_compile,
                stateful=lambda: (model, self.seed_generator))
        progress = Progress(len(x), verbose, title=self.name, unit_name="image")
        if len(x) == 0:
            return x.copy(), {}
        return batching.map_batches(self._compiled[key], [x, y], batch_size, progress)[0], {}


class EagerAttack(Attack):
    """An attack that runs outside the graph (a numpy driver around compiled
    pieces): it cannot be a training attack."""

    in_graph = False

    def __call__(self, model, x, y):
        """Eager only: runs ``perturb`` on the tensors' values."""
        if not backend.executing_eagerly(x, y):
            raise UsageError(f"The {self.name!r} attack runs only eagerly (outside "
                             "tf.function, jax.jit and train_step); call its perturb() "
                             "on arrays.")
        return ops.convert_to_tensor(self.perturb(model, np.asarray(x), np.asarray(y)))
