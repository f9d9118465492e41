"""Evaluates a trained classifier under a suite of attacks.

    python evaluate.py --model=saved_models/digits_tiny_at_alp \\
        --attacks=fgsm,pgd --eps=0.1,0.2 --num_steps=20
    python evaluate.py --model=runs/digits_at_alp --attacks=pgd:restarts=5

--model takes a SavedModel (a version folder, or the folder of versions: the
highest is used), a .keras file, or a training --model_dir (its
classifier.keras). Dataset, split seed and eps default to what the model was
trained with (read from the export's metadata or the run's metrics.json).
Writes results.json and results.md into --out_dir and prints the table.

Attacks are registry names, each with optional options:
name[:key=value[:key=value]], e.g. pgd:num_steps=100:restarts=5. Suite-wide
--num_steps, --step_size, --restarts and --queries go to every attack that
takes them. Bad input exits with code 2 and one line on stderr.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __name__ == "__main__":
    from atalp_keras.cli.common import import_tensorflow_quietly

    import_tensorflow_quietly()

from absl import app, flags  # noqa: E402

from atalp_keras import audit, cli, evaluation, plots  # noqa: E402

PROGRAM = "evaluate.py"


def define_flags(flag_values=flags.FLAGS):
    """Defines evaluate.py's flags in ``flag_values``."""
    fv = flag_values
    flags.DEFINE_string(
        "model", None,
        "SavedModel folder (a version, or the folder of numbered versions: "
        "the highest is used), a .keras file, or a training --model_dir.",
        flag_values=fv)
    flags.DEFINE_string("model_name", None,
                        "Label of the model in the results; default: from "
                        "its path.", flag_values=fv)
    flags.DEFINE_string("method", None,
                        "Label of the training method in the results; "
                        "default: from the model's metadata.", flag_values=fv)
    flags.DEFINE_string(
        "dataset", None,
        "Test data (digits, tfds:<name>[:split], folder:<path>, idx:<path>); "
        "default: the model's training dataset, else digits.", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data folder.", flag_values=fv)
    flags.DEFINE_list("image_size", None,
                      "Resize images to H,W; default: as in training.",
                      flag_values=fv)
    flags.DEFINE_integer("data_seed", None,
                         "Seed of the digits/folder train-test split; "
                         "default: as in training, else 0.", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_string(
        "attacks", "fgsm,pgd",
        "Comma-separated attacks by registry name, each optionally with "
        "options name:key=value[:key=value] (e.g. pgd:num_steps=100:"
        "restarts=5). 'none' = clean only (clean accuracy is always "
        "reported).", flag_values=fv)
    flags.DEFINE(cli.EpsListParser("eps"), "eps", None,
                 "Comma-separated L-inf radii on the [0, 1] pixel scale "
                 "(8/255 or 0.0314); default: the training eps.",
                 flag_values=fv, serializer=cli.ListSerializer())
    flags.DEFINE(cli.EpsParser("step_size"), "step_size", None,
                 "Step of iterative attacks, same scale; default: each "
                 "attack's own (PGD: 2.5*eps/num_steps).", flag_values=fv,
                 serializer=flags.ArgumentSerializer())
    flags.DEFINE_integer("num_steps", None,
                         "Iterations of every iterative attack; default: "
                         "each attack's own (PGD 20, APGD/FAB/AutoAttack "
                         "100).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("restarts", None,
                         "Random restarts of attacks that take them (the "
                         "worst case per example is kept); default: each "
                         "attack's own (1).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("queries", None,
                         "Query budget of score/decision-based attacks "
                         "(square, rays, AutoAttack's square); default: each "
                         "attack's own.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("num_examples", 0,
                         "Evaluate a fixed random subset of this many test "
                         "examples; 0 = the whole test set.", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", 256,
                         "Examples per attack call.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("out_dir", None,
                        "Folder for results.json and results.md; default: "
                        "results/<model_name>.", flag_values=fv)
    flags.DEFINE_integer("seed", 0,
                         "Seed of the attacks' random starts and of the "
                         "example subset.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "0 quiet, 1 one line per attack.",
                         lower_bound=0, upper_bound=1, flag_values=fv)
    flags.DEFINE_list(
        "source_model", [],
        "Transfer attacks: comma-separated models (same forms as --model) on "
        "which PGD adversarial examples are made and then evaluated on "
        "--model. Gray-box: same architecture and method, another seed; "
        "black-box: another architecture.", flag_values=fv)
    flags.DEFINE_boolean(
        "audit", True,
        "After the attacks, check the results for signs of gradient masking "
        "(PASS/WARN/FAIL lines, also in audit.md and audit.json). A FAIL (an attack left "
        "the eps-ball or [0, 1]) makes the exit code 1.", flag_values=fv)
    flags.DEFINE_integer("audit_examples", 200,
                         "Test examples the audit's own probe attacks use.",
                         lower_bound=1, flag_values=fv)


def _image_size(values):
    if not values:
        return None
    try:
        size = [int(v) for v in values]
    except ValueError:
        raise ValueError(f"`image_size` must be one or two integers. "
                         f"Received: image_size={','.join(values)}") from None
    return tuple(size * 2 if len(size) == 1 else size)


def run(argv, flag_values=flags.FLAGS):
    """`main`, returning the list of result records."""
    if len(argv) > 1:
        cli.fail(PROGRAM, f"Unexpected arguments: {' '.join(argv[1:])}")
    fv = flag_values
    if not fv.model:
        cli.fail(PROGRAM, "--model is required (a SavedModel folder, a "
                          ".keras file or a training model_dir).")
    try:
        # Cheap checks first: a typo in --attacks costs no model loading.
        requests = evaluation.parse_attack_list(fv.attacks)
        model, metadata = evaluation.load_model_for_eval(fv.model)
        eps_values = fv.eps or ([metadata["eps"]] if "eps" in metadata
                                else None)
        if not eps_values:
            raise ValueError("--eps is required: the model does not record "
                             "its training eps.")
        attacks = evaluation.build_attacks(
            requests, eps_values, num_steps=fv.num_steps,
            step_size=fv.step_size, restarts=fv.restarts,
            queries=fv.queries, seed=fv.seed)
        image_size = _image_size(fv.image_size) if fv.image_size else (
            tuple(metadata["image_size"]) if metadata.get("image_size")
            else None)
        x, y, info = evaluation.load_test_arrays(
            fv.dataset or metadata.get("dataset", "digits"),
            data_dir=fv.data_dir or metadata.get("data_dir"),
            image_size=image_size,
            data_seed=(fv.data_seed if fv.data_seed is not None
                       else metadata.get("data_seed", 0)),
            num_examples=fv.num_examples, seed=fv.seed)
        expected = tuple(model.input_shape[1:])
        if None not in expected and tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"The model takes images of shape {expected} but the data "
                f"has {tuple(x.shape[1:])}; pass --image_size or the "
                f"training --dataset. Received: dataset={info.name!r}")
        sources = []
        for path in fv.source_model:
            source, source_metadata = evaluation.load_model_for_eval(path)
            evaluation.check_source_compatible(source, model, path)
            sources.append((source, source_metadata.get("name", path)))
        pgd_requests = [r for r in requests if r[0] == "pgd"] or [("pgd", {})]
        transfer_attacks = evaluation.build_attacks(
            pgd_requests, eps_values, num_steps=fv.num_steps,
            step_size=fv.step_size, restarts=fv.restarts, seed=fv.seed)
        name = fv.model_name or metadata.get("name", "model")
        out_dir = fv.out_dir or os.path.join("results", name)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ValueError(f"--out_dir is a file, not a folder. Received: "
                             f"out_dir={out_dir!r}")
    except ValueError as error:
        cli.fail(PROGRAM, error)
    method = fv.method or metadata.get("method", "unknown")
    records = evaluation.evaluate_model(
        model, x, y, attacks, batch_size=fv.batch_size, verbose=fv.verbose,
        model_name=name, method=method)
    for source, source_name in sources:
        transferred = evaluation.evaluate_model(
            model, x, y, transfer_attacks, batch_size=fv.batch_size,
            verbose=fv.verbose, model_name=name, method=method,
            source=source, source_name=source_name)
        records.extend(r for r in transferred if r["attack"] != evaluation.CLEAN)
    table = evaluation.write_results(records, out_dir)
    plots.plot_accuracy_vs_eps(
        [r for r in records if r["attack"] != evaluation.WORST_CASE],
        os.path.join(out_dir, "accuracy_vs_eps.png"), title=name)
    print(table)
    print(f"Wrote {os.path.join(out_dir, evaluation.RESULTS_JSON)}, "
          f"{evaluation.RESULTS_MD} and accuracy_vs_eps.png.")
    if fv.audit:
        if fv.verbose:
            print("Gradient-masking audit (probe attacks on "
                  f"{min(fv.audit_examples, len(y))} examples):", flush=True)
        checks = audit.audit(records, model, x, y, eps=max(eps_values),
                             num_examples=fv.audit_examples,
                             batch_size=fv.batch_size, seed=fv.seed)
        report = audit.format_audit(checks)
        print(report)
        with open(os.path.join(out_dir, "audit.json"), "w") as handle:
            json.dump(checks, handle, indent=2)
        with open(os.path.join(out_dir, "audit.md"), "w") as handle:
            handle.write(f"# Gradient-masking audit of {name}\n\n```\n{report}\n```\n")
        if audit.has_failure(checks):
            print(f"{PROGRAM}: the audit FAILED (see above); results are not "
                  "trustworthy.", file=sys.stderr)
            sys.exit(1)
    return records


def main(argv, flag_values=flags.FLAGS):
    """Evaluates with the parsed flags; bad input exits 2 (one line)."""
    cli.quiet_tensorflow_logs()
    run(argv, flag_values)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=lambda argv: cli.parse_flags(
        argv, flags.FLAGS, PROGRAM))
