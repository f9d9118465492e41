"""Bench-only variants of the package's model and attack (the lever rows)."""


def make_xla_attack(inner):
    """Wraps an attack so that only the attack loop is XLA-compiled inside an
    otherwise non-XLA ``train_step`` (a nested ``jit_compile`` tf.function)."""
    import tensorflow as tf

    from atalp_keras.attacks.base import Attack

    class XLAAttack(Attack):
        def __init__(self):
            super().__init__(inner.eps, seed=inner.seed)
            self.inner = inner
            self.name = inner.name
            self.step_size = getattr(inner, "step_size", None)
            self._fn = {}

        def __call__(self, model, x, y):
            if id(model) not in self._fn:
                self._fn[id(model)] = tf.function(
                    lambda xb, yb: inner(model, xb, yb), jit_compile=True, reduce_retracing=True)
            return self._fn[id(model)](x, y)

        def get_config(self):
            return inner.get_config()

    return XLAAttack()


def paired_variant_class(mode):
    """ATALPModel whose paired presets (alp, at, at_alp, trades) get their clean
    and adversarial halves differently, to measure the library's choice:

    ``"two_pass"``: two forward passes (clean, then adversarial) instead of one
    concatenated pass. ``"split"``: one concatenated pass, halves taken with
    ``ops.split`` instead of slices ``[:B]``/``[B:]``.
    """
    from keras import ops

    from atalp_keras.model import ATALPModel

    class PairedVariantModel(ATALPModel):
        def compute_terms(self, x, y, x_adv, training=True):
            if x_adv is None or not self._paired:
                return super().compute_terms(x, y, x_adv, training=training)
            if mode == "two_pass":
                out_nat = self.feature_model(x, training=training)
                out_adv = self.feature_model(x_adv, training=training)
                logits_nat, logits_adv = out_nat["logits"], out_adv["logits"]
                stages_nat, stages_adv = out_nat["stages"], out_adv["stages"]
            else:
                out = self.feature_model(ops.concatenate([x, x_adv], axis=0), training=training)
                logits_nat, logits_adv = ops.split(out["logits"], 2, axis=0)
                halves = [ops.split(s, 2, axis=0) for s in out["stages"]]
                stages_nat, stages_adv = [h[0] for h in halves], [h[1] for h in halves]
            return self.paired_terms(y, logits_nat, logits_adv, stages_nat, stages_adv)

    return PairedVariantModel


def model_class_for(option):
    """The model class of a variant option (``two_pass``, ``split`` or other)."""
    from atalp_keras.model import ATALPModel

    return paired_variant_class(option) if option in ("two_pass", "split") else ATALPModel


def training_attack(cfg, method):
    """The preset's training attack at the bench's eps, step and K."""
    from atalp_keras import methods

    return methods.default_attack(method, eps=cfg["eps"], step_size=cfg["step_size"],
                                  num_steps=cfg["pgd_steps"], seed=cfg["seed"])


def compiled_model(cfg, classifier, stages, method, option="", **compile_kwargs):
    """The package's model for ``method`` with the variant ``option`` (``xla``,
    ``no_validate``, ``no_clean``, ``two_pass``, ``split``, ``spe<N>``), compiled with
    Adam 1e-3. ``no_clean`` is ``clean_metrics=False``: ``pat``/``fast`` skip the
    clean-accuracy forward, the same work as the hand-written loop."""
    import keras

    model = model_class_for(option)(classifier, stage_layers=stages,
                                    validate_inputs=option != "no_validate")
    compile_kwargs.setdefault("jit_compile", option == "xla")
    compile_kwargs.setdefault("steps_per_execution",
                              int(option[3:]) if option.startswith("spe") else 1)
    compile_kwargs.setdefault("attack", training_attack(cfg, method))
    if option == "no_clean":
        compile_kwargs.setdefault("clean_metrics", False)
    model.compile(optimizer=keras.optimizers.Adam(compile_kwargs.pop("learning_rate", 1e-3)),
                  method=method, eval_attack=None, **compile_kwargs)
    return model
