"""The attack contract, checked for every attack in the REGISTRY (a newly
registered attack is covered without editing this file): eps-ball and [0, 1],
stronger than no attack, one result object, config round trip, graph safety
as declared, input checks at the entry points."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from atalp_keras.attacks import (ATTACKS, AttackResult, check_trainable_attack,
                                 deserialize_attack, get_attack, serialize_attack)
from atalp_keras.errors import UsageError

from attack_checks import (BAD_INPUTS, EPS, assert_bad_input_refused, correct, first_test_points,
                           small)

N = 60


@pytest.fixture(scope="module")
def points(digits):
    return first_test_points(digits, N)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name, undefended_model, points):
    x, y = points
    result = small(name, seed=0).run(undefended_model, x, y)
    assert isinstance(result, AttackResult) and isinstance(result.extras, dict)
    x_adv = result.x_adv
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    clean, robust = correct(undefended_model, x, y), correct(undefended_model, x_adv, y)
    assert robust.mean() < clean.mean() - 0.3
    assert result.success.shape == (N,) and result.success.dtype == bool
    np.testing.assert_array_equal(result.success, clean & ~robust)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_in_graph_attacks_trace_and_eager_ones_refuse(name, undefended_model, points):
    x, y = points[0][:8], points[1][:8]
    attack = small(name, seed=0)
    run = tf.function(lambda xb, yb: attack(undefended_model, xb, yb))
    if attack.in_graph:
        x_adv = np.asarray(run(tf.constant(x), tf.constant(y)))
        assert np.abs(x_adv - x).max() <= EPS + 1e-6
        check_trainable_attack(attack, None)
    else:
        # (inside tf.function, autograph re-raises it as a StagingError)
        with pytest.raises(Exception, match="runs only eagerly"):
            run(tf.constant(x), tf.constant(y))
        with pytest.raises(UsageError, match="cannot be a training attack.*pgd"):
            check_trainable_attack(attack)


def test_four_registered_attacks_are_eager_only():
    eager = sorted(n for n, cls in ATTACKS.items() if not cls.in_graph)
    assert eager == ["autoattack", "autoattack-fast", "rays", "square"]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_eps_on_the_0_255_scale_is_refused(name):
    with pytest.raises(UsageError, match="0-255"):
        get_attack(name, eps=8)


def test_unknown_attack_lists_the_names():
    with pytest.raises(UsageError) as error:
        get_attack("apgd", eps=0.1)
    for name in ATTACKS:
        assert name in str(error.value)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_config_has_every_argument_and_round_trips(name):
    attack = small(name, seed=3)
    assert attack.name == name
    config = attack.get_config()
    arguments = set(inspect.signature(ATTACKS[name].__init__).parameters) - {"self"}
    assert set(config) == arguments
    assert type(attack).from_config(config).get_config() == config
    assert deserialize_attack(serialize_attack(attack)).get_config() == config
    description = attack.describe()
    assert description["attack"] == name and "seed" not in description


def test_query_budgets_have_one_name():
    for name, cls in ATTACKS.items():
        params = set(inspect.signature(cls.__init__).parameters)
        assert not params & {"query_budget", "queries", "max_queries", "num_queries"}, name


def test_apgd_dlr_through_the_ce_class_round_trips():
    attack = get_attack("apgd-ce", eps=0.1, loss="dlr")
    assert attack.name == "apgd-dlr"
    assert deserialize_attack(serialize_attack(attack)).get_config() == attack.get_config()


@pytest.mark.parametrize("name", sorted(n for n, cls in ATTACKS.items() if not cls.in_graph))
def test_eager_call_matches_perturb(undefended_model, points, name):
    x, y = points[0][:20], points[1][:20]
    first, second = small(name, seed=5), small(name, seed=5)
    out = first(undefended_model, tf.constant(x), tf.constant(y))
    assert isinstance(out, tf.Tensor)
    np.testing.assert_array_equal(np.asarray(out), second.perturb(undefended_model, x, y))
    assert keras.ops.shape(out) == x.shape


# ------------------------------------------------------------ input checks


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("mistake, fragment", BAD_INPUTS)
def test_bad_inputs_are_refused_in_one_line(name, mistake, fragment, undefended_model, points):
    assert_bad_input_refused(name, mistake, fragment, undefended_model, points)


@pytest.mark.parametrize("make", [
    lambda logits: keras.layers.Softmax()(logits),
    lambda logits: keras.layers.Activation(tf.nn.softmax)(logits),
    lambda logits: keras.layers.Lambda(lambda t: keras.ops.softmax(t))(logits),
], ids=["Softmax", "tf.nn.softmax", "ops.softmax"])
def test_probability_classifiers_are_refused_by_behaviour(make, undefended_model, points):
    x, y = points[0][:6], points[1][:6]
    inputs = keras.Input((8, 8, 1))
    probs = keras.Model(inputs, make(undefended_model(inputs)))
    for name in ("pgd", "square"):
        with pytest.raises(UsageError, match="probabilities, not logits"):
            small(name).perturb(probs, x, y)


@pytest.mark.parametrize("name", sorted(n for n, cls in ATTACKS.items() if not cls.in_graph))
def test_compile_refuses_an_eager_only_training_attack(name):
    import atalp_keras as ak

    model = ak.ATALPModel(ak.tiny_resnet((8, 8, 1), 10, widths=(4, 4, 4, 4)))
    with pytest.raises(UsageError, match="cannot be a training attack") as error:
        model.compile(optimizer="adam", method="pat", attack=small(name))
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="cannot be a training attack"):
        model.compile(optimizer="adam", method="pat", attack=small("pgd"),
                      eval_attack=small(name))
