"""The settings of an evaluation (``evaluate.py`` / ``atalp-evaluate``), each
declared once: the command's flags are generated from `EvaluateSettings`
(field name = flag name; ``metadata`` holds the help, bounds and parser).

A value left None is filled from the model card of the evaluated model
(dataset, data_dir, data_seed, image_size, eps, method) when it has one.
"""

import dataclasses
from typing import Optional

from atalp_keras.parsing import parse_eps, parse_image_size
from atalp_keras.errors import UsageError


def parse_eps_values(text, name="eps"):
    """``"0.1,8/255"`` -> ``(0.1, 0.0314)``; every radius in (0, 1].

    Raises:
        UsageError: For an empty list (``--eps=``) or a bad radius.
    """
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise UsageError(f"--{name} is empty: give one or more comma-separated radii on "
                         f"the [0, 1] scale, e.g. --{name}=0.1,8/255, or leave the flag "
                         f"out to use the model's training eps. Received: --{name}={text!r}")
    return tuple(parse_eps(item, name) for item in items)


def setting(default, help_text, **metadata):
    """A dataclass field that is also a flag of the command."""
    return dataclasses.field(default=default, metadata={"help": help_text, **metadata})


@dataclasses.dataclass
class EvaluateSettings:
    """What to evaluate, on which data, under which attacks, and where the
    results go."""

    model: Optional[str] = setting(
        None, "SavedModel folder (a version, or the folder of numbered versions: the "
        "highest is used), a .keras file, or a training --model_dir.")
    model_name: Optional[str] = setting(
        None, "Label of the model in the results; default: from its path.")
    method: Optional[str] = setting(
        None, "Label of the training method in the results; default: from the model "
        "card.")
    dataset: Optional[str] = setting(
        None, "Test data (digits, tfds:<name>[:split], folder:<path>, idx:<path>); "
        "default: the model's training dataset, else digits.")
    data_dir: Optional[str] = setting(None, "TFDS data folder.")
    image_size: Optional[tuple] = setting(
        None, "Resize images to H,W; default: as in training.", parser=parse_image_size)
    data_seed: Optional[int] = setting(
        None, "Seed of the digits/folder train-test split; default: as in training, "
        "else 0.", lower_bound=0)
    attacks: str = setting(
        "fgsm,pgd", "Comma-separated attacks by registry name, each optionally with "
        "options name:key=value[:key=value] (e.g. pgd:num_steps=100:restarts=5). "
        "'none' = clean only (clean accuracy is always reported).")
    eps: Optional[tuple] = setting(
        None, "Comma-separated L-inf radii on the [0, 1] pixel scale (8/255 or "
        "0.0314); default: the training eps.", parser=parse_eps_values)
    step_size: Optional[float] = setting(
        None, "Step of iterative attacks, same scale; default: each attack's own "
        "(PGD: 2.5*eps/num_steps).", parser=parse_eps)
    num_steps: Optional[int] = setting(
        None, "Iterations of every iterative attack; default: each attack's own "
        "(PGD 20, APGD/FAB/AutoAttack 100).", lower_bound=1)
    restarts: Optional[int] = setting(
        None, "Random restarts of attacks that take them (the worst case per example "
        "is kept); default: each attack's own (1).", lower_bound=1)
    queries: Optional[int] = setting(
        None, "Query budget of score/decision-based attacks (square, rays, "
        "AutoAttack's square); default: each attack's own.", lower_bound=1)
    num_examples: int = setting(
        0, "Evaluate a fixed random subset of this many test examples (at most the "
        "test set's size); 0 = the whole test set.", lower_bound=0)
    batch_size: int = setting(256, "Examples per attack call.", lower_bound=1)
    out_dir: Optional[str] = setting(
        None, "Folder for results.json and results.md; default: results/<model_name>.")
    seed: int = setting(
        0, "Seed of the attacks' random starts and of the example subset.", lower_bound=0)
    verbose: int = setting(1, "0 quiet, 1 one line per attack.", lower_bound=0,
                           upper_bound=1)
    source_model: tuple = setting(
        (), "Transfer attacks: comma-separated models (same forms as --model) on which "
        "PGD adversarial examples are made and then evaluated on --model. Gray-box: "
        "same architecture and method, another seed; black-box: another architecture.")
    audit: bool = setting(
        True, "After the attacks, check the results for signs of gradient masking "
        "(PASS/WARN/FAIL lines, also in audit.md and audit.json). A FAIL (an attack left "
        "the eps-ball or [0, 1]) makes the exit code 1.")
    audit_examples: int = setting(
        200, "Test examples the audit's own probe attacks use.", lower_bound=1)
