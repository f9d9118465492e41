"""``ATALPModel``: adversarial training with attention and logit pairing as a
``keras.Model`` whose ``fit`` does the whole method.

Goodman et al. 2020, "Attention and Adversarial Logit Pairing"; the formulas and
defaults are those of METHOD.md::

    L = w_nat CE(f(x), y) + w_adv CE(f(x_adv), y) + alp * ALP + at * AT
        (+ beta * KL(f(x) || f(x_adv)) for TRADES)
        (+ BCE(f(x_adv), y) + beta * KL(f(x) || f(x_adv)) * (1 - p_y(x)) for MART)

Any preset can train with adversarial weight perturbation (`atalp_keras.awp`).

The steps run on TensorFlow and on JAX. TensorFlow's ``train_step(data)``
reads and assigns variables; JAX's ``train_step(state, data)`` is a pure
function of their values and returns ``(logs, state)``. Both run the same
step code: on JAX it runs inside a ``StatelessScope`` mapping every variable
to its value in ``state`` (`atalp_keras.backend.stateless_step`), and the
pieces that must differ (gradients, the optimizer update, a cond) go through
`atalp_keras.backend`.
"""

import sys

import keras
import numpy as np
from keras import ops

from atalp_keras import attention, awp, backend, batch_checks, compile_args, losses, methods
from atalp_keras.attacks import check_trainable_attack, serialize_attack
from atalp_keras.attacks.primitives import unrolled_steps
from atalp_keras.errors import UsageError
from atalp_keras.features import (check_functional, check_logits_output, detect_stage_layers,
                                  feature_model_for, resolve_stage_layers)
from atalp_keras.folding import attack_view
# The key of an evaluation batch's attack mask (batch_checks.ATTACK_MASK).
ATTACK_MASK = batch_checks.ATTACK_MASK
# The logs weighted like the adversarial examples ("loss" is the adversarial CE
# whenever an attack runs).
_ADV_KEYS = ("ce_adv", "adv_accuracy", "loss")


@keras.saving.register_keras_serializable(package="atalp_keras")
class ATALPModel(keras.Model):
    """Wraps a logits classifier and trains it adversarially with ``fit``.

    Args:
        classifier: Functional ``keras.Model`` from ``[0, 1]`` images to logits.
        stage_layers: Names of the layers whose outputs are paired by the
            attention term; None finds ResNet stage ends
            (``conv{2..5}_block{N}_out``) by name when a method needs them
            (``at``, ``at_alp``); ``[]`` pairs none (those methods then refuse).
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
        check_functional(classifier)
        check_logits_output(classifier)
        self.classifier = classifier
        # Why no stages are known (a failed detection), said when a method needs them.
        self._stage_error = None
        if stage_layers is None:
            try:
                stage_layers = detect_stage_layers(classifier)
            except UsageError as error:
                self._stage_error, stage_layers = str(error), []
        self.stage_layers = resolve_stage_layers(classifier, stage_layers)
        self.feature_model = feature_model_for(classifier, self.stage_layers) \
            if self.stage_layers else None
        # Built now, outside any trace: the folded view the attacks call
        # (folding.attack_view), kept while the classifier lives.
        attack_view(classifier)
        self.num_classes = int(classifier.outputs[0].shape[-1])
        self.image_shape = tuple(classifier.inputs[0].shape[1:])
        self.validate_inputs = bool(validate_inputs)
        self._trackers = {}
        self._settings = None
        # The classifier is built, so this model is too (needed for export/save).
        self.built = True

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Keras' ``export`` of the classifier (its inference signature).

        The training wrapper itself is never called on images by ``fit``, so
        the classifier, a functional model, is what gets exported. For the
        versioned TF Serving layout with metadata use
        ``atalp_keras.export.export_saved_model``.
        """
        return self.classifier.export(filepath, format=format, verbose=verbose, **kwargs)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", method="at_alp", attack="auto", eval_attack="auto",
                natural_weight=None, adv_weight=None, alp_weight=None, at_weight=None,
                trades_beta=None, mart_beta=None, attention_p=2, clean_metrics=True,
                awp_gamma=0.0, awp_warmup_epochs=0, pair_pass="joint", jit_compile=False,
                **kwargs):
        """Configures the method.

        Args:
            optimizer: Any Keras optimizer (or its name).
            method: Preset name: ``standard``, ``pat``, ``alp``, ``at``,
                ``at_alp``, ``trades``, ``fast`` (METHOD.md table) or ``mart``
                (Wang et al. 2020).
            attack: The training attack (an ``Attack``); ``"auto"`` uses the
                preset's default at eps 8/255, step 2/255, 7 steps (TRADES, MART: 10).
            eval_attack: Attack run by ``evaluate``/validation to report
                ``adv_accuracy``; ``"auto"`` = PGD-10 at the training attack's
                eps with step 2.5 * eps / 10 (none for ``standard``); None turns
                it off.
            natural_weight, adv_weight, alp_weight, at_weight, trades_beta,
                mart_beta: Override the preset's weight of that loss term.
            attention_p: Power ``p`` of the attention map and its norm.
            clean_metrics: For methods that train on ``x_adv`` alone (``pat``,
                ``fast``): run one extra inference pass on the clean half to log
                ``accuracy`` and ``ce_natural`` (about 1/(3 * steps + 3) of a
                PGD step). False skips it and drops those two logs. Other
                methods get both from the training pass for free.
            awp_gamma: Adversarial weight perturbation (Wu et al. 2020): after
                the attack, each conv/dense kernel is pushed up the preset's
                loss by ``awp_gamma`` times its norm, and the weight update is
                the gradient there. 0 (default) turns it off at no cost;
                csdongxian/AWP uses 0.01 for PGD-AT and 0.005 for TRADES.
                Costs one more training pass per step.
            awp_warmup_epochs: Epochs of ``fit`` trained without the
                perturbation first.
            pair_pass: How a method that scores both the clean batch and its
                adversarial twin (every preset but ``pat``, ``fast`` and
                ``standard``) runs them through the network in training:
                ``"joint"`` (default), one forward pass of both (METHOD.md),
                so BatchNorm normalises them with shared batch statistics;
                ``"separate"``, two passes, clean then adversarial, each
                normalised with its own, as the TRADES and MART reference
                code does (BatchNorm's moving statistics then update twice
                per step).
            jit_compile: XLA-compile the train/test step (TensorFlow: off by
                default, it slowed small models on CPU; measure on your
                hardware). Under JAX the steps are always ``jax.jit``-compiled
                (JAX has no graph mode without XLA); ``run_eagerly=True`` runs
                them op by op.
            **kwargs: Passed to ``keras.Model.compile`` (e.g.
                ``steps_per_execution``, ``run_eagerly``).
        """
        if "loss" in kwargs or "metrics" in kwargs:
            raise UsageError(
                "ATALPModel.compile takes no `loss` or `metrics`: the loss is defined by "
                f"`method` and every term is logged. Received: {sorted(kwargs)}"
            )
        preset = methods.get_method(method)
        overrides = dict(natural_weight=natural_weight, adv_weight=adv_weight,
                         alp_weight=alp_weight, at_weight=at_weight,
                         trades_beta=trades_beta, mart_beta=mart_beta)
        weights = compile_args.resolve_weights(preset, overrides)
        attack, eval_attack = compile_args.resolve_attacks(preset, weights, attack, eval_attack)
        check_trainable_attack(attack, eval_attack)  # both run inside train/test_step
        awp_gamma, awp_warmup_epochs = awp.check_settings(awp_gamma, awp_warmup_epochs)
        if backend.STATELESS_STEPS:
            _refuse_tf_strategy()
        if awp_gamma > 0 and attack is None:
            raise UsageError(
                f"AWP perturbs the weights against the adversarial loss, but method "
                f"{preset.name!r} trains without an attack. Received: awp_gamma={awp_gamma:g}, "
                f"method={preset.name!r}")
        if pair_pass not in methods.PAIR_PASSES:
            choices = ", ".join(map(repr, methods.PAIR_PASSES))
            raise UsageError(f"`pair_pass` must be one of {choices}. "
                             f"Received: pair_pass={pair_pass!r}")
        if weights["at_weight"] > 0 and not self.stage_layers:
            raise UsageError(self._stage_error or (
                f"Method {preset.name!r} pairs attention maps of stage outputs "
                f"(at_weight={weights['at_weight']:g}) but no stages are given. Received: "
                "stage_layers=[]. Name the layers to pair (--stage_layers on the command "
                "line), or use a method without the attention term (e.g. alp)."))
        self.method = preset.name
        self.loss_weights_ = weights
        self.train_attack = attack
        self.eval_attack = eval_attack
        self.attention_p = attention_p
        # Which forward pass the loss needs: none of the clean half (pat, fast),
        # both halves through the feature model (any attention term), or both
        # through the plain classifier.
        self._paired = attack is not None and any(
            weights[k] > 0 for k in ("natural_weight", "alp_weight", "at_weight", "trades_beta",
                                     "mart_beta"))
        if pair_pass != "joint" and not self._paired:
            raise UsageError(
                f"pair_pass={pair_pass!r} splits the training pass of the clean batch and "
                f"its adversarial twin, but method {preset.name!r} with these weights trains "
                "on one of them alone. Received: "
                + ", ".join(f"{k}={v:g}" for k, v in weights.items() if v) + ", attack="
                + ("None" if attack is None else type(attack).__name__))
        self.pair_pass = pair_pass
        self.awp_gamma = awp_gamma
        self.awp_warmup_epochs = awp_warmup_epochs
        # Read when the train step is traced (awp.AWPWarmup flips it).
        self._awp_active = awp_gamma > 0 and awp_warmup_epochs == 0
        self.clean_metrics = bool(clean_metrics)
        self._settings = {
            "method": preset.name,
            **weights,
            "attention_p": attention_p,
            "clean_metrics": self.clean_metrics,
            "awp_gamma": awp_gamma,
            "awp_warmup_epochs": awp_warmup_epochs,
            "pair_pass": pair_pass,
            "attack": serialize_attack(attack),
            "eval_attack": serialize_attack(eval_attack),
        }
        # Stored as asked (a model saved under JAX keeps TensorFlow's default).
        self._jit_compile_arg = bool(jit_compile)
        if backend.STATELESS_STEPS and not kwargs.get("run_eagerly"):
            jit_compile = True
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        self._build_trackers()

    def _train_keys(self):
        if self.train_attack is None:
            return ["loss", "ce_natural", "accuracy"]
        if not self._paired:
            clean = self.clean_metrics
            return ["loss"] + ["ce_natural"] * clean + ["ce_adv"] + ["accuracy"] * clean \
                + ["adv_accuracy"]
        keys = ["loss", "ce_natural", "ce_adv", "alp"] + ["at"] * bool(self.stage_layers)
        if self.loss_weights_["trades_beta"] > 0:
            keys.append("trades_kl")
        if self.loss_weights_["mart_beta"] > 0:
            keys += ["mart_bce", "mart_kl"]
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

    @property
    def metrics_names(self):
        """The names of the values ``evaluate`` and ``test_on_batch`` return
        with ``return_dict=False``, in their order (empty before ``compile``).

        Keras lists every tracker here; this model also tracks training-only
        terms (``alp``, ``at``, ``trades_kl``) that evaluation does not
        compute, so that list would not line up with the values. ``fit``'s
        history and ``train_on_batch(..., return_dict=True)`` hold those terms.
        """
        return self._test_keys() if self._settings is not None else []

    def _as_list(self, logs):
        return [logs[key] for key in self.metrics_names]

    @property
    def non_trainable_variables(self):
        """Keras' list, plus on JAX the state of the attacks' seed generators.

        A JAX step is a pure function of the variables Keras passes in; an
        attack's random start drawn from a generator outside that state would
        be the same at every step. The generators are not tracked as layers'
        are, so saved weights do not change.
        """
        variables = super().non_trainable_variables
        if not backend.STATELESS_STEPS:
            return variables
        seen = {id(v) for v in variables}
        for attack in (getattr(self, "train_attack", None), getattr(self, "eval_attack", None)):
            generator = getattr(attack, "seed_generator", None)
            if generator is not None and id(generator.state) not in seen:
                seen.add(id(generator.state))
                variables.append(generator.state)
        return variables

    def get_compile_config(self):
        config = super().get_compile_config()
        if self._settings is not None:
            config["atalp"] = self._settings
        if backend.STATELESS_STEPS and config is not None:
            config["jit_compile"] = getattr(self, "_jit_compile_arg", False)
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
            # None re-runs a detection that failed (so loading says why again).
            "stage_layers": None if self._stage_error else list(self.stage_layers),
            "validate_inputs": self.validate_inputs,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(
            config["classifier"], custom_objects=custom_objects)
        return cls(**config)

    # ------------------------------------------------------------------- checks
    def _unpack(self, data):
        """``(x, y, sample_weight, attack_mask)``: shapes checked at trace time,
        values at run time. The third element of ``data`` is a sample weight,
        or a dict with ``"sample_weight"`` and/or ``ATTACK_MASK`` entries."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y = batch_checks.static_checks(x, y, self.image_shape, self.classifier.name)
        if backend.GRAPH_ASSERTS and self.validate_inputs and not self.jit_compile:
            x, y = batch_checks.graph_checks(x, y, self.num_classes)
        sample_weight, attack_mask = batch_checks.split_weights(sample_weight)
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        if attack_mask is not None:
            attack_mask = ops.reshape(ops.cast(attack_mask, "float32"), (-1,))
        return x, y, sample_weight, attack_mask

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
        if self.pair_pass == "separate":
            if self.feature_model is None:
                return self._weighted_terms(y, self.classifier(x, training=training),
                                            self.classifier(x_adv, training=training), None)
            nat = self.feature_model(x, training=training)
            adv = self.feature_model(x_adv, training=training)
            return self.paired_terms(y, nat["logits"], adv["logits"], nat["stages"],
                                     adv["stages"])
        both = ops.concatenate([x, x_adv], axis=0)
        at = None
        if self.feature_model is None:
            logits = self.classifier(both, training=training)
        else:
            outputs = self.feature_model(both, training=training)
            logits = outputs["logits"]
            at = attention.stacked_pairing_loss(outputs["stages"], self.attention_p)
        logits_nat, logits_adv = ops.split(logits, 2, axis=0)
        return self._weighted_terms(y, logits_nat, logits_adv, at)

    def paired_terms(self, y, logits_nat, logits_adv, stages_nat, stages_adv):
        """The weighted loss of METHOD.md from both halves' logits and stages.

        Returns:
            ``(terms, logits_natural, logits_adv)`` as `compute_terms`.
        """
        at = attention.attention_pairing_loss(stages_nat, stages_adv, self.attention_p) \
            if stages_nat else None
        return self._weighted_terms(y, logits_nat, logits_adv, at)

    def _weighted_terms(self, y, logits_nat, logits_adv, at):
        w = self.loss_weights_
        terms = {
            "ce_natural": losses.cross_entropy(y, logits_nat),
            "ce_adv": losses.cross_entropy(y, logits_adv),
            "alp": losses.alp_loss(logits_nat, logits_adv),
        }
        total = (w["natural_weight"] * terms["ce_natural"] + w["adv_weight"] * terms["ce_adv"]
                 + w["alp_weight"] * terms["alp"])
        if at is not None:
            terms["at"] = at
            total = total + w["at_weight"] * at
        if w["trades_beta"] > 0:
            terms["trades_kl"] = losses.trades_kl(logits_nat, logits_adv)
            total = total + w["trades_beta"] * terms["trades_kl"]
        if w["mart_beta"] > 0:
            terms["mart_bce"] = losses.mart_boosted_ce(y, logits_adv)
            terms["mart_kl"] = losses.mart_weighted_kl(y, logits_nat, logits_adv)
            total = total + terms["mart_bce"] + w["mart_beta"] * terms["mart_kl"]
        terms["loss"] = total
        return terms, logits_nat, logits_adv

    def _update(self, keys, terms, y, logits_nat, logits_adv, sample_weight, adv_weight=None):
        """Updates the trackers of ``keys``; ``adv_weight`` (default: the
        sample weight) weights the adversarial ones."""
        adv_weight = sample_weight if adv_weight is None else adv_weight
        for key in keys:
            weight = adv_weight if key in _ADV_KEYS else sample_weight
            if key == "accuracy":
                self._trackers[key].update_state(y, logits_nat, sample_weight=weight)
            elif key == "adv_accuracy":
                self._trackers[key].update_state(y, logits_adv, sample_weight=weight)
            else:
                self._trackers[key].update_state(terms[key], sample_weight=weight)
        return {key: self._trackers[key].result() for key in keys}

    # ------------------------------------------------------------ the steps
    def train_step(self, *args):
        """One training step: ``train_step(data) -> logs`` on TensorFlow,
        ``train_step(state, data) -> (logs, state)`` on JAX."""
        if backend.STATELESS_STEPS:
            state, data = args
            return backend.stateless_step(self._train_step, self._state_groups(4), state, data)
        return self._train_step(*args)

    def test_step(self, *args):
        """One evaluation step (signatures as `train_step`)."""
        if backend.STATELESS_STEPS:
            state, data = args
            return backend.stateless_step(self._test_step, self._state_groups(3), state, data)
        return self._test_step(*args)

    def predict_step(self, *args):
        """The classifier's logits: ``predict_step(data)`` on TensorFlow,
        ``predict_step(state, data) -> (logits, non_trainable)`` on JAX."""
        if backend.STATELESS_STEPS:
            state, data = args
            logits, (_, non_trainable) = backend.stateless_step(
                self._predict_step, self._state_groups(2), state, data)
            return logits, non_trainable
        return self._predict_step(*args)

    def _state_groups(self, count):
        """The variables of a JAX step's state, in Keras' order: trainable,
        non-trainable, then the optimizer's (training) and the metrics'."""
        groups = [self.trainable_variables, self.non_trainable_variables]
        if count == 4:
            groups.append(list(self.optimizer.variables))
        if count >= 3:
            groups.append(self.metrics_variables)
        return groups

    def _pass_state(self):
        """The variables a training pass reads besides the trainable ones
        (BatchNorm statistics, dropout seeds, a loss scale)."""
        return self.classifier.non_trainable_variables + list(self.optimizer.variables)

    def _train_step(self, data):
        if self._settings is None:
            raise RuntimeError("Call compile() before fit().")
        x, y, sample_weight, attack_mask = self._unpack(data)
        if attack_mask is not None:
            raise UsageError(f"`{ATTACK_MASK}` marks the examples an evaluation attacks; "
                             "training attacks every example. Received: a training batch "
                             f"with an {ATTACK_MASK!r} entry")
        x_adv = None
        if self.train_attack is not None:
            with unrolled_steps(True):
                x_adv = backend.stop_gradient(self.train_attack(self.classifier, x, y))
        keys = self._train_keys()
        logits_clean = None
        if x_adv is not None and not self._paired and "accuracy" in keys:
            # pat / fast train on x_adv alone; clean accuracy comes from an inference
            # pass with the weights the attack saw, so BatchNorm statistics only see
            # what the loss sees.
            logits_clean = self.classifier(x, training=False)
        variables = self.classifier.trainable_variables
        if self._awp_active and x_adv is not None:
            grads, terms, logits_nat, logits_adv, regularization = self._awp_gradients(
                x, y, x_adv, sample_weight, variables)
        else:
            (terms, logits_nat, logits_adv, regularization, _), grads = backend.variable_grads(
                lambda: self._training_loss(x, y, x_adv, sample_weight), variables,
                self._pass_state())
        backend.apply_gradients(self.optimizer, grads, variables)
        if logits_clean is not None:
            logits_nat = logits_clean
            terms["ce_natural"] = losses.cross_entropy(y, logits_nat)
        terms["loss"] = terms["loss"] + regularization
        return self._update(keys, terms, y, logits_nat, logits_adv, sample_weight)

    def _training_loss(self, x, y, x_adv, sample_weight):
        """The training pass: ``(terms, logits_nat, logits_adv, regularization,
        scaled_loss)``, read at whatever values the weights have (the real
        ones, or AWP's perturbed ones inside a ``StatelessScope``)."""
        terms, logits_nat, logits_adv = self.compute_terms(x, y, x_adv, training=True)
        # This replica's share of the global-batch (weighted) mean: summed over
        # replicas it is the single-device loss, so gradients do not change
        # with the device count.
        loss = losses.weighted_mean(terms["loss"], sample_weight)
        regularization = ops.sum(ops.stack(self.classifier.losses)) \
            if self.classifier.losses else 0.0
        loss = loss + regularization / losses.replicas_in_sync()
        return terms, logits_nat, logits_adv, regularization, self.optimizer.scale_loss(loss)

    def _awp_gradients(self, x, y, x_adv, sample_weight, variables):
        """AWP's gradients (Wu et al. 2020): the training loss's gradient at
        the weights perturbed up that same loss, per kernel by ``awp_gamma``
        times its norm. The variables are never written: the perturbed values
        are substituted in a ``StatelessScope``, so the update lands on the
        unperturbed weights exactly."""
        index = awp.perturbed_indices(variables)
        values = backend.snapshot(variables)
        state = self._pass_state()

        def training_pass():
            return self._training_loss(x, y, x_adv, sample_weight)

        # The ascent step is computed like csdongxian/AWP's proxy model: in
        # training mode, its BatchNorm statistic updates thrown away.
        _, ascent_grads, _ = backend.grads_at(training_pass, variables, values, index, state)
        # Every replica perturbs by the global batch's step.
        ascent_grads = losses.global_sum(ascent_grads)
        steps = awp.weight_perturbation([values[i] for i in index], ascent_grads,
                                        self.awp_gamma)
        for i, step in zip(index, steps):
            values[i] = values[i] + step
        outputs, grads, new_state = backend.grads_at(training_pass, variables, values,
                                                     range(len(values)), state)
        # The real pass's state updates (BatchNorm statistics, seeds) do happen.
        for variable, value in zip(state, new_state):
            if value is not None:
                variable.assign(value)
        return (grads, *outputs[:4])

    def _test_step(self, data):
        if self._settings is None:
            raise RuntimeError("Call compile() before evaluate().")
        x, y, sample_weight, attack_mask = self._unpack(data)
        logits_nat = self.classifier(x, training=False)
        terms = {"ce_natural": losses.cross_entropy(y, logits_nat)}
        logits_adv, adv_weight = None, None
        if self.eval_attack is not None:
            def attacked():
                with unrolled_steps(True):
                    x_adv = self.eval_attack(self.classifier, x, y)
                return self.classifier(x_adv, training=False)
            if attack_mask is None:
                logits_adv = attacked()
            else:
                # Batches without a marked example skip the attack (their
                # adversarial metrics get weight 0).
                logits_adv = backend.cond(
                    ops.any(attack_mask > 0), attacked, lambda: logits_nat,
                    self.trainable_variables + self.non_trainable_variables)
                adv_weight = attack_mask if sample_weight is None else attack_mask * sample_weight
            terms["ce_adv"] = losses.cross_entropy(y, logits_adv)
        # val_loss: the adversarial CE when an eval attack runs, else the clean CE.
        terms["loss"] = terms.get("ce_adv", terms["ce_natural"])
        return self._update(self._test_keys(), terms, y, logits_nat, logits_adv, sample_weight,
                            adv_weight)

    def _check_inputs(self, x, y, what):
        if isinstance(x, np.ndarray):
            batch_checks.check_arrays(x, y, self.num_classes, self.image_shape)
        elif self.validate_inputs or batch_checks.is_tf_dataset(x):
            batch_checks.check_first_batch(x, self.num_classes, self.image_shape, what)

    # Without asserts inside a step (JAX), every batch is checked on the host
    # on its way into the step function.
    def make_train_function(self, force=False):
        function = super().make_train_function(force)
        self.train_function = self._host_checked(self.train_function, "training", 4)
        return function

    def make_test_function(self, force=False):
        function = super().make_test_function(force)
        self.test_function = self._host_checked(self.test_function, "evaluation", 3)
        return function

    def make_predict_function(self, force=False):
        super().make_predict_function(force)
        self.predict_function = self._host_checked(self.predict_function, "prediction", 2)
        return self.predict_function

    def _host_checked(self, function, what, groups):
        """``function(state, batches)`` with each batch checked first
        (`batch_checks.host_checks`), on backends without graph asserts."""
        if backend.GRAPH_ASSERTS or function is None or getattr(function, "host_checked", False):
            return function
        labels = what != "prediction"

        def check(data):
            if self.validate_inputs:
                x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
                batch_checks.host_checks(x, y if labels else None, self.num_classes, what)
            return data

        def run(state, batches):
            try:
                return function(state, map(check, batches))
            except UsageError:
                # Refused before the step ran: Keras' JAX fit has taken the
                # values out of the variables for the epoch, put them back.
                backend.restore_state(self._state_groups(groups), state)
                raise

        run.host_checked = True
        return run

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit``; inputs are checked up front (numpy arrays whole,
        a ``tf.data`` pipeline by its first batch: NaN pixels, range, labels,
        shapes, emptiness) so a mistake costs one clear message, not an epoch.
        ``sample_weight``/``class_weight`` weight every loss term."""
        self._check_inputs(x, y, "training")
        kwargs["callbacks"] = self._fit_callbacks(kwargs.get("callbacks"))
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            self._check_inputs(validation[0], validation[1], "validation")
        elif validation is not None:
            self._check_inputs(validation, None, "validation")
        with batch_checks.user_errors("training"):
            return super().fit(x, y, *args, **kwargs)

    def _fit_callbacks(self, callbacks):
        """The user's callbacks after the model's own, which must run first:
        a diverged epoch raises before any checkpoint of it is written."""
        if isinstance(callbacks, keras.callbacks.CallbackList):
            return callbacks  # Keras' own list, used as given.
        own = [awp.DivergenceGuard(hint=self._divergence_hint())]
        if self._settings is not None and self.awp_gamma > 0 and self.awp_warmup_epochs > 0:
            own.append(awp.AWPWarmup(self.awp_warmup_epochs))
        # mode="auto" on val_adv_accuracy etc.: Keras cannot tell the direction
        # of this model's own trackers (atalp_keras.monitor_modes).
        from atalp_keras.monitor_modes import resolve_auto_modes
        return own + resolve_auto_modes(callbacks, self._trackers)

    def _divergence_hint(self):
        if self._settings is not None and self.awp_gamma > 0:
            return (f"Try a smaller awp_gamma (received {self.awp_gamma:g}), a warm-up "
                    "(awp_warmup_epochs) or a lower learning rate.")
        return "Try a lower learning rate."

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        """``keras.Model.evaluate``, inputs checked as in `fit`; the list
        (``return_dict=False``) is in the order of `metrics_names`."""
        self._check_inputs(x, y, "evaluation")
        with batch_checks.user_errors("evaluation"):
            logs = super().evaluate(x, y, batch_size=batch_size, verbose=verbose,
                                    sample_weight=sample_weight, steps=steps,
                                    callbacks=callbacks, return_dict=True, **kwargs)
        return logs if return_dict else self._as_list(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """``keras.Model.test_on_batch``; the list in the order of `metrics_names`."""
        with batch_checks.user_errors("evaluation"):
            logs = super().test_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
        return logs if return_dict else self._as_list(logs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """``keras.Model.predict``: the classifier's logits. Images are checked as
        in `fit` (numpy arrays whole, a ``tf.data`` pipeline by its first batch,
        every batch in the graph unless ``validate_inputs=False``), so 0-255
        images are refused, not answered with one class for all."""
        batch_checks.check_prediction_input(x, self.image_shape)
        with batch_checks.user_errors("prediction"):
            return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                                   callbacks=callbacks)

    def _predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        x = ops.convert_to_tensor(x)
        if backend.GRAPH_ASSERTS and self.validate_inputs and not self.jit_compile:
            x = batch_checks.graph_image_checks(ops.cast(x, "float32"))
        return self.classifier(x, training=False)


def _refuse_tf_strategy():
    """Under JAX a ``tf.distribute`` strategy cannot place the steps."""
    loaded = sys.modules.get("tensorflow")
    if loaded is not None and loaded.distribute.has_strategy():
        strategy = type(loaded.distribute.get_strategy()).__name__
        raise UsageError(
            "tf.distribute strategies run ATALPModel only under KERAS_BACKEND=tensorflow; "
            f"under JAX train on one device. Received: a {strategy} scope with "
            "KERAS_BACKEND=jax")
