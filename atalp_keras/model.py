"""``ATALPModel``: adversarial training with attention and logit pairing as a
``keras.Model`` whose ``fit`` does the whole method.

Goodman et al. 2020, "Attention and Adversarial Logit Pairing"; the formulas and
defaults are those of METHOD.md::

    L = w_nat CE(f(x), y) + w_adv CE(f(x_adv), y) + alp * ALP + at * AT
        (+ beta * KL(f(x) || f(x_adv)) for TRADES)
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from atalp_keras import attention, losses, methods
from atalp_keras.attacks import check_trainable_attack, deserialize_attack, serialize_attack
from atalp_keras.attacks.base import Attack
from atalp_keras.attacks.pgd import PGDAttack
from atalp_keras.data import validate_arrays
from atalp_keras.features import build_feature_model, resolve_stage_layers

_WEIGHT_ARGS = ("natural_weight", "adv_weight", "alp_weight", "at_weight", "trades_beta")


def _replicas_in_sync():
    return tf.distribute.get_strategy().num_replicas_in_sync


@keras.saving.register_keras_serializable(package="atalp_keras")
class ATALPModel(keras.Model):
    """Wraps a logits classifier and trains it adversarially with ``fit``.

    Args:
        classifier: Functional ``keras.Model`` from ``[0, 1]`` images to logits.
        stage_layers: Names of the layers whose outputs are paired by the
            attention term; None finds ResNet stage ends
            (``conv{2..5}_block{N}_out``) by name.
        validate_inputs: Check each batch for NaN/inf pixels, pixels outside
            [0, 1] and labels outside [0, K) (cheap; skipped under XLA).

    Example:
        >>> classifier = atalp_keras.tiny_resnet((8, 8, 1), 10)
        >>> model = atalp_keras.ATALPModel(classifier)
        >>> model.compile(optimizer="adam", method="at_alp",
        ...               attack=atalp_keras.PGDAttack(eps=0.2, step_size=0.05,
        ...                                            num_steps=7))
        >>> model.fit(x_train, y_train, epochs=10, validation_data=(x_test, y_test))
    """

    def __init__(self, classifier, stage_layers=None, validate_inputs=True, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.stage_layers = resolve_stage_layers(classifier, stage_layers)
        self.feature_model = build_feature_model(classifier, self.stage_layers)
        self.num_classes = int(classifier.outputs[0].shape[-1])
        self.image_shape = tuple(classifier.inputs[0].shape[1:])
        self.validate_inputs = bool(validate_inputs)
        self._trackers = {}
        self._settings = None
        # The classifier is built, so this model is too (needed for export/save).
        self.built = True

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", method="at_alp", attack="auto", eval_attack="auto",
                natural_weight=None, adv_weight=None, alp_weight=None, at_weight=None,
                trades_beta=None, attention_p=2, jit_compile=False, **kwargs):
        """Configures the method.

        Args:
            optimizer: Any Keras optimizer (or its name).
            method: Preset name: ``standard``, ``pat``, ``alp``, ``at``,
                ``at_alp``, ``trades`` or ``fast`` (METHOD.md table).
            attack: The training attack (an ``Attack``); ``"auto"`` uses the
                preset's default at eps 8/255, step 2/255, 7 steps (TRADES: 10).
            eval_attack: Attack run by ``evaluate``/validation to report
                ``adv_accuracy``; ``"auto"`` = PGD-10 at the training attack's
                eps with step 2.5 * eps / 10 (none for ``standard``); None turns
                it off.
            natural_weight, adv_weight, alp_weight, at_weight, trades_beta:
                Override the preset's weight of that loss term.
            attention_p: Power ``p`` of the attention map and its norm.
            jit_compile: XLA-compile the train/test step (off by default: it
                slowed small models on CPU; measure on your hardware).
            **kwargs: Passed to ``keras.Model.compile`` (e.g.
                ``steps_per_execution``, ``run_eagerly``).
        """
        if "loss" in kwargs or "metrics" in kwargs:
            raise ValueError(
                "ATALPModel.compile takes no `loss` or `metrics`: the loss is defined by "
                f"`method` and every term is logged. Received: {sorted(kwargs)}"
            )
        preset = methods.get_method(method)
        overrides = dict(natural_weight=natural_weight, adv_weight=adv_weight,
                         alp_weight=alp_weight, at_weight=at_weight,
                         trades_beta=trades_beta)
        weights = {}
        for name in _WEIGHT_ARGS:
            value = overrides[name]
            value = getattr(preset, name) if value is None else value
            value = float(value)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value}")
            weights[name] = value
        if attack == "auto":
            attack = methods.default_attack(preset)
        if isinstance(attack, dict):
            attack = deserialize_attack(attack)
        if attack is not None and not isinstance(attack, Attack):
            raise ValueError(
                "`attack` must be an atalp_keras Attack (e.g. PGDAttack(eps=8/255, ...)), "
                f"None or 'auto'. Received: attack={attack!r}"
            )
        adversarial = any(weights[k] > 0 for k in ("adv_weight", "alp_weight", "at_weight",
                                                   "trades_beta"))
        if adversarial and attack is None:
            raise ValueError(
                f"Method {preset.name!r} with weights {weights} uses adversarial examples, "
                "so it needs an attack. Received: attack=None"
            )
        if not adversarial:
            attack = None
        if eval_attack == "auto":
            eval_attack = None
            if attack is not None:
                # Step 2.5 * eps / steps (Madry et al.), whatever the training step.
                eval_attack = PGDAttack(attack.eps, num_steps=10, seed=attack.seed)
        if isinstance(eval_attack, dict):
            eval_attack = deserialize_attack(eval_attack)
        if eval_attack is not None and not isinstance(eval_attack, Attack):
            raise ValueError(
                f"`eval_attack` must be an Attack, None or 'auto'. Received: {eval_attack!r}"
            )
        check_trainable_attack(attack, eval_attack)  # both run inside train/test_step
        self.method = preset.name
        self.loss_weights_ = weights
        self.train_attack = attack
        self.eval_attack = eval_attack
        self.attention_p = attention_p
        # Which forward pass the loss needs: none of the clean half (pat, fast),
        # both halves through the feature model (any attention term), or both
        # through the plain classifier.
        self._paired = attack is not None and any(
            weights[k] > 0 for k in ("natural_weight", "alp_weight", "at_weight", "trades_beta"))
        self._settings = {
            "method": preset.name,
            **weights,
            "attention_p": attention_p,
            "attack": serialize_attack(attack),
            "eval_attack": serialize_attack(eval_attack),
        }
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        self._build_trackers()

    def _train_keys(self):
        if self.train_attack is None:
            return ["loss", "ce_natural", "accuracy"]
        keys = ["loss", "ce_natural", "ce_adv"]
        if self._paired:
            keys += ["alp", "at"]
            if self.loss_weights_["trades_beta"] > 0:
                keys.append("trades_kl")
        return keys + ["accuracy", "adv_accuracy"]

    def _test_keys(self):
        if self.eval_attack is None:
            return ["loss", "ce_natural", "accuracy"]
        return ["loss", "ce_natural", "ce_adv", "accuracy", "adv_accuracy"]

    def _build_trackers(self):
        keys = dict.fromkeys(self._train_keys() + self._test_keys())
        self._trackers = {}
        for key in keys:
            if key.endswith("accuracy"):
                self._trackers[key] = keras.metrics.SparseCategoricalAccuracy(name=key)
            else:
                self._trackers[key] = keras.metrics.Mean(name=key)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def get_compile_config(self):
        config = super().get_compile_config()
        if self._settings is not None:
            config["atalp"] = self._settings
        return config

    def compile_from_config(self, config):
        settings = dict(config.get("atalp", {}))
        optimizer = keras.optimizers.deserialize(config["optimizer"]) \
            if config.get("optimizer") is not None else "adam"
        extra = {k: config[k] for k in ("steps_per_execution", "run_eagerly")
                 if config.get(k) is not None}
        self.compile(optimizer=optimizer, jit_compile=bool(config.get("jit_compile", False)),
                     **settings, **extra)
        if self.built:
            self.optimizer.build(self.classifier.trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "stage_layers": list(self.stage_layers),
            "validate_inputs": self.validate_inputs,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(
            config["classifier"], custom_objects=custom_objects)
        return cls(**config)

    # ------------------------------------------------------------------- checks
    def _check_batch(self, x, y):
        """Static shape checks at trace time, cheap value checks at run time."""
        if len(x.shape) != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"Expected images of shape (batch, {', '.join(map(str, self.image_shape))}) "
                f"for classifier {self.classifier.name!r}. Received: shape {tuple(x.shape)}"
            )
        if y is None:
            raise ValueError("ATALPModel needs labels: pass (images, labels). Received: y=None")
        if len(y.shape) == 2 and y.shape[-1] == 1:
            y = ops.squeeze(y, axis=-1)
        if len(y.shape) != 1:
            raise ValueError(
                "Labels must be integer class ids of shape (batch,), not one-hot. Received: "
                f"labels of shape {tuple(y.shape)}"
            )
        if not y.dtype.is_integer:
            y = tf.cast(y, "int32")
        x = tf.cast(x, "float32")
        y = tf.cast(y, "int32")
        if self.validate_inputs and not self.jit_compile:
            finite = tf.reduce_all(tf.math.is_finite(x))
            checks = [
                tf.debugging.Assert(finite, [
                    "Images contain NaN or inf pixels; count:",
                    tf.reduce_sum(tf.cast(~tf.math.is_finite(x), "int32"))]),
                tf.debugging.Assert(
                    tf.logical_or(~finite, tf.logical_and(tf.reduce_min(x) >= 0.0,
                                                          tf.reduce_max(x) <= 1.0)),
                    ["Pixels must be in [0, 1] (divide 0-255 images by 255). Received min/max:",
                     tf.reduce_min(x), tf.reduce_max(x)]),
                tf.debugging.Assert(
                    tf.logical_and(tf.reduce_min(y) >= 0, tf.reduce_max(y) < self.num_classes),
                    [f"Labels must be in [0, {self.num_classes}). Received min/max:",
                     tf.reduce_min(y), tf.reduce_max(y)]),
            ]
            with tf.control_dependencies(checks):
                x = tf.identity(x)
                y = tf.identity(y)
        return x, y

    def _unpack(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._check_batch(x, y)

    # ------------------------------------------------------------ the method
    def compute_terms(self, x, y, x_adv, training=True):
        """Per-example loss terms and logits for a clean batch and its twin.

        Returns:
            ``(terms, logits_natural, logits_adv)``; ``terms`` maps names to
            ``(B,)`` tensors, ``terms["loss"]`` is the weighted total.
        """
        w = self.loss_weights_
        if x_adv is None:
            logits_nat = self.classifier(x, training=training)
            ce_nat = losses.cross_entropy(y, logits_nat)
            return {"loss": w["natural_weight"] * ce_nat, "ce_natural": ce_nat}, logits_nat, None
        if not self._paired:
            logits_adv = self.classifier(x_adv, training=training)
            ce_adv = losses.cross_entropy(y, logits_adv)
            return {"loss": w["adv_weight"] * ce_adv, "ce_adv": ce_adv}, None, logits_adv
        batch = ops.shape(x)[0]
        outputs = self.feature_model(ops.concatenate([x, x_adv], axis=0), training=training)
        logits = outputs["logits"]
        logits_nat, logits_adv = logits[:batch], logits[batch:]
        stages_nat = [s[:batch] for s in outputs["stages"]]
        stages_adv = [s[batch:] for s in outputs["stages"]]
        return self.paired_terms(y, logits_nat, logits_adv, stages_nat, stages_adv)

    def paired_terms(self, y, logits_nat, logits_adv, stages_nat, stages_adv):
        """The weighted loss of METHOD.md from both halves' logits and stages.

        Returns:
            ``(terms, logits_natural, logits_adv)`` as `compute_terms`.
        """
        w = self.loss_weights_
        terms = {
            "ce_natural": losses.cross_entropy(y, logits_nat),
            "ce_adv": losses.cross_entropy(y, logits_adv),
            "alp": losses.alp_loss(logits_nat, logits_adv),
            "at": attention.attention_pairing_loss(stages_nat, stages_adv, self.attention_p),
        }
        total = (w["natural_weight"] * terms["ce_natural"] + w["adv_weight"] * terms["ce_adv"]
                 + w["alp_weight"] * terms["alp"] + w["at_weight"] * terms["at"])
        if w["trades_beta"] > 0:
            terms["trades_kl"] = losses.trades_kl(logits_nat, logits_adv)
            total = total + w["trades_beta"] * terms["trades_kl"]
        terms["loss"] = total
        return terms, logits_nat, logits_adv

    def _update(self, keys, terms, y, logits_nat, logits_adv):
        for key in keys:
            if key == "accuracy":
                self._trackers[key].update_state(y, logits_nat)
            elif key == "adv_accuracy":
                self._trackers[key].update_state(y, logits_adv)
            else:
                self._trackers[key].update_state(terms[key])
        return {key: self._trackers[key].result() for key in keys}

    def train_step(self, data):
        if self._settings is None:
            raise RuntimeError("Call compile() before fit().")
        x, y = self._unpack(data)
        x_adv = None
        if self.train_attack is not None:
            x_adv = tf.stop_gradient(self.train_attack(self.classifier, x, y))
        logits_clean = None
        if x_adv is not None and not self._paired:
            # pat / fast train on x_adv alone; clean accuracy comes from an
            # inference pass so BatchNorm statistics only see what the loss sees.
            logits_clean = self.classifier(x, training=False)
        variables = self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            terms, logits_nat, logits_adv = self.compute_terms(x, y, x_adv, training=True)
            # Per-example mean over this replica's batch, divided by the number of
            # replicas: summed over replicas that is the global-batch mean, so
            # gradients do not change with the device count.
            loss = ops.mean(terms["loss"])
            if self.classifier.losses:
                loss = loss + ops.sum(ops.stack(self.classifier.losses))
            scaled = self.optimizer.scale_loss(loss / _replicas_in_sync())
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        if logits_nat is None:
            logits_nat = logits_clean
            terms["ce_natural"] = losses.cross_entropy(y, logits_nat)
        terms["loss"] = ops.broadcast_to(loss, ops.shape(y))
        return self._update(self._train_keys(), terms, y, logits_nat, logits_adv)

    def test_step(self, data):
        if self._settings is None:
            raise RuntimeError("Call compile() before evaluate().")
        x, y = self._unpack(data)
        logits_nat = self.classifier(x, training=False)
        terms = {"ce_natural": losses.cross_entropy(y, logits_nat)}
        logits_adv = None
        if self.eval_attack is not None:
            x_adv = self.eval_attack(self.classifier, x, y)
            logits_adv = self.classifier(x_adv, training=False)
            terms["ce_adv"] = losses.cross_entropy(y, logits_adv)
        # val_loss: the adversarial CE when an eval attack runs, else the clean CE.
        terms["loss"] = terms.get("ce_adv", terms["ce_natural"])
        return self._update(self._test_keys(), terms, y, logits_nat, logits_adv)

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit``; numpy inputs are checked up front (NaN pixels,
        range, labels, shapes) so a mistake costs one clear message, not an
        epoch."""
        if isinstance(x, np.ndarray):
            validate_arrays(x, y, self.num_classes, self.image_shape)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2 \
                and isinstance(validation[0], np.ndarray):
            validate_arrays(validation[0], validation[1], self.num_classes, self.image_shape)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        if isinstance(x, np.ndarray):
            validate_arrays(x, y, self.num_classes, self.image_shape)
        return super().evaluate(x, y, *args, **kwargs)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.classifier(x, training=False)
