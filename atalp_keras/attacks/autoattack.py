"""AutoAttack (Croce & Hein 2020, ICML): a fixed ensemble of parameter-free
attacks, each run only on the points the previous ones left correctly
classified, keeping the first adversarial found per example.

    standard: APGD-CE (100 steps), APGD-T (9 targets x 100 steps),
              FAB-T (9 targets x 100 steps), Square (5000 queries)
    fast:     APGD-CE, APGD-T

Robust accuracy is re-measured after each stage on the returned images (a point
only counts as broken if the image is misclassified, inside the eps-ball and
inside [0, 1]); ``run(...).extras["report"]`` lists, per stage, the component,
the robust accuracy after it, its seconds and the number of points it attacked.
The components are built once per AutoAttack object and keep their compiled
functions per model, so a second call on the same model traces nothing.

With ``resume_file``, a stage attacks its points in pieces of ``save_every``
(1,000) and the state (robust mask, the adversarials found, the points still
to attack, the report) is written there after every piece; a later call on
the same model, points and settings starts where the file left off. A killed
run loses at most the piece it was in: Square on 7,809 points of a robust
Fashion-MNIST model took 1.9 hours on two shared CPU cores, a piece of 1,000
about 15 minutes. Every piece starts from its component's first random draw and
randomness is keyed per example, so a resumed run returns what an
uninterrupted one would (up to floating-point effects of the batch
composition, which the batch size check in the fingerprint cannot rule out).

Where this differs from the reference implementation (fra31/auto-attack):

- "fast" is this package's version (no reference counterpart); the reference's
  "plus" and "rand" versions are not provided.
- Randomness is keyed per example and round (see ``apgd.py``), so a component
  gives every example the same result inside AutoAttack as when run alone with
  the same seed; the reference draws per batch, so its results depend on the
  batch composition.
- APGD starts uniformly in the ball, uses the exact checkpoints
  ``ceil(p_j * N)``, resets momentum when it jumps back to the best point and
  stops a batch early once all of it is misclassified; the reference uses an
  integer approximation of the checkpoints and keeps the momentum.
- FAB-T has no final refinement search and its restarts start at radius
  eps / 2 (what the reference's ``min(best, eps) / 2`` gives for unbroken
  points).
- Square counts the clean prediction as one of its 5000 queries, and redraws a
  proposal that would not change the image at most four times (then flips it).
- The reference's ``checks.py`` diagnostics are reduced to one check: a model
  that returns probabilities instead of logits is refused.
"""

import hashlib
import json
import os
import sys
import time
import zipfile

import numpy as np

from atalp_keras.attacks.apgd import APGDAttack, APGDTAttack
from atalp_keras.attacks.base import EagerAttack, check_positive_int
from atalp_keras.attacks.batching import predict_classes
from atalp_keras.attacks.fab import FABAttack
from atalp_keras.attacks.square import SquareAttack
from atalp_keras.errors import UsageError

VERSIONS = ("standard", "fast")


def inside_ball(candidate, x, eps):
    """Per example: ``candidate`` is inside the L-inf ``eps``-ball around ``x``
    and the [0, 1] box (what counts as a valid adversarial)."""
    axes = tuple(range(1, x.ndim))
    size = np.abs(candidate - x).max(axis=axes)
    return (size <= eps + 1e-6) & (candidate.min(axis=axes) >= 0.0) \
        & (candidate.max(axis=axes) <= 1.0)


class AutoAttack(EagerAttack):
    """AutoAttack in L-inf.

    Args:
        eps: L-inf radius on the [0, 1] pixel scale (8/255 = 0.0314).
        version: ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square) or
            ``"fast"`` (APGD-CE, APGD-T).
        num_steps: Iterations of APGD-CE, APGD-T and FAB-T (100).
        n_target_classes: Target classes of APGD-T and FAB-T (9).
        n_queries: Square's query budget (5000).
        seed: Optional int, given to every component (every call with a seed
            gives the same result, as a freshly built attack would).
        resume_file: Optional path of an ``.npz`` file holding the progress
            of a call (written atomically after every piece of a stage). A
            call whose model weights, points, labels and settings match the
            file's resumes at its first unfinished piece (a finished file returns
            at once); any other call, or an unreadable file, starts over and
            replaces it. The batch size and ``jit_compile`` must match too;
            the code version is not checked, and with ``seed=None`` a match
            returns the earlier random run. Not a setting: in
            ``get_config`` (so a config rebuilds the attack) but not in
            ``describe`` or the fingerprint. The caller removes the file once it has kept the
            result. One file per call: several eps sharing one path keep
            replacing each other's state.
        save_every: With ``resume_file``: the points a stage attacks between
            two saves (1000). Not in the fingerprint (a file written with
            another value resumes). Without ``resume_file`` a stage attacks
            all its points at once.

    Extras of ``run(...)``: ``report`` (list of dicts with ``component``,
    ``robust_accuracy``, ``seconds``, ``n``: the points it attacked),
    ``robust`` (per-example bool) and ``broken_by`` (per-example component
    name or None).

    Example:
        >>> attack = AutoAttack(eps=8 / 255)
        >>> result = attack.run(model, x_test, y_test, verbose=1)
        >>> result.extras["report"][-1]["robust_accuracy"]
    """

    name = "autoattack"

    def __init__(self, eps, version="standard", num_steps=100, n_target_classes=9,
                 n_queries=5000, seed=None, resume_file=None, save_every=1000):
        super().__init__(eps, seed=seed)
        if version not in VERSIONS:
            raise UsageError(f"`version` must be one of {VERSIONS}. Received: version={version!r}")
        self.version = version
        self.num_steps = check_positive_int(num_steps, "num_steps")
        self.n_target_classes = check_positive_int(n_target_classes, "n_target_classes")
        self.n_queries = check_positive_int(n_queries, "n_queries")
        self.name = "autoattack" if version == "standard" else "autoattack-fast"
        self.resume_file = None if resume_file is None else os.fspath(resume_file)
        self.save_every = check_positive_int(save_every, "save_every")
        self._components = None

    def get_config(self):
        return {**super().get_config(), "version": self.version, "num_steps": self.num_steps,
                "n_target_classes": self.n_target_classes, "n_queries": self.n_queries,
                "resume_file": self.resume_file, "save_every": self.save_every}

    def describe(self):
        return {"attack": self.name, "eps": self.eps, "version": self.version,
                "num_steps": self.num_steps,
                "components": [c.describe() for c in self.components()]}

    def components(self):
        """The component attacks, freshly built with this attack's seed, in order."""
        attacks = [
            APGDAttack(self.eps, num_steps=self.num_steps, loss="ce", seed=self.seed),
            APGDTAttack(self.eps, num_steps=self.num_steps,
                        n_target_classes=self.n_target_classes, seed=self.seed),
        ]
        if self.version == "standard":
            attacks += [
                FABAttack(self.eps, num_steps=self.num_steps,
                          n_target_classes=self.n_target_classes, seed=self.seed),
                SquareAttack(self.eps, n_queries=self.n_queries, seed=self.seed),
            ]
        return attacks

    def _stages(self):
        """The components this object runs: built once, so their compiled
        functions (one per model) are reused by every call."""
        if self._components is None:
            self._components = self.components()
        for attack in self._components:
            attack.restart_randomness()
        return self._components

    def _generate(self, model, x, y, batch_size, jit_compile, example_ids, verbose):
        """Runs the components in sequence on the still-robust points.

        Returns:
            Per example, the first adversarial found (``x`` where none was),
            and the extras ``report``, ``robust``, ``broken_by``, ``success``.
        """
        n = len(x)
        ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
        stages = self._stages()
        # Computed before any stage runs: a model that cannot be identified is
        # refused at once, not after the first component's minutes.
        fingerprint = (None if self.resume_file is None
                       else self._fingerprint(model, x, y, batch_size, jit_compile))
        state = self._resumed(fingerprint, x, verbose)
        if state is None:
            start = time.time()
            robust = predict_classes(model, x, batch_size) == y
            state = {"done": 0, "robust": robust, "clean": robust.copy(), "x_adv": x.copy(),
                     "broken_by": [None] * n,
                     "report": [{"component": "clean",
                                 "robust_accuracy": float(robust.mean()) if n else 0.0,
                                 "seconds": time.time() - start, "n": n}]}
        robust, x_adv, broken_by, report = (state[k] for k in ("robust", "x_adv", "broken_by",
                                                                "report"))
        for stage, attack in enumerate(stages, start=1):
            if stage <= state["done"]:
                continue
            if state.get("pending") is None:  # the stage starts: its points, its clock
                state.update(pending=robust.copy(), stage_n=int(robust.sum()), stage_seconds=0.0)
            pending = state["pending"]
            todo = np.flatnonzero(pending)
            if todo.size and verbose:
                resumed = (f" ({state['stage_n'] - todo.size} attacked before)"
                           if todo.size < state["stage_n"] else "")
                print(f"{self.name} stage {stage}/{len(stages)}: {attack.name} "
                      f"on {state['stage_n']} points{resumed}", file=sys.stderr, flush=True)
            size = todo.size if fingerprint is None else self.save_every
            for first in range(0, todo.size, max(size, 1)):
                piece = todo[first:first + size]
                if verbose and size < todo.size:
                    print(f"{attack.name}: points {first + 1}-{first + piece.size} of "
                          f"{todo.size}", file=sys.stderr, flush=True)
                start = time.time()
                # Every piece from the component's first draw: with per-example
                # keys, the pieces give what one call on all the points gives.
                attack.restart_randomness()
                candidate, _ = attack._generate(model, x[piece], y[piece], batch_size,
                                                jit_compile, ids[piece], verbose)
                pred = predict_classes(model, candidate, batch_size)
                broken = (pred != y[piece]) & inside_ball(candidate, x[piece], self.eps)
                x_adv[piece[broken]] = candidate[broken]
                robust[piece[broken]] = False
                for i in piece[broken]:
                    broken_by[i] = attack.name
                pending[piece] = False
                state["stage_seconds"] += time.time() - start
                if pending.any():
                    self._save_state(state, fingerprint)
            report.append({"component": attack.name, "robust_accuracy": float(robust.mean()),
                           "seconds": state["stage_seconds"], "n": state["stage_n"]})
            state.update(done=stage, pending=None)
            self._save_state(state, fingerprint)
            if verbose:
                print(f"{self.name} after {attack.name}: robust accuracy "
                      f"{robust.mean():.4f} ({report[-1]['seconds']:.1f} s)", file=sys.stderr)
        return x_adv, {"report": report, "robust": robust, "broken_by": broken_by,
                       "success": state["clean"] & ~robust}

    def _fingerprint(self, model, x, y, batch_size, jit_compile):
        """What a resumed call must share with the one that wrote the file:
        the settings, the batch size and XLA (both can flip a borderline
        point), the points, labels and model weights."""
        weights = getattr(model, "weights", None)
        if weights is None:
            raise UsageError("`resume_file` needs a Keras model (its weights identify the run). "
                             f"Received: model={type(model).__name__}")
        settings = {k: v for k, v in self.get_config().items()
                    if k not in ("resume_file", "save_every")}
        call = {"config": settings, "batch_size": int(batch_size),
                "jit_compile": bool(jit_compile)}
        digest = hashlib.sha256(json.dumps(call, sort_keys=True).encode())
        for array in [x, y.astype(np.int64)] + [np.asarray(w) for w in weights]:
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def _resumed(self, fingerprint, x, verbose):
        """The saved state of this call, or None (no file, another call's, or
        a file that cannot be read)."""
        if fingerprint is None or not os.path.isfile(self.resume_file):
            return None
        try:
            with np.load(self.resume_file, allow_pickle=False) as saved:
                if str(saved["fingerprint"]) != fingerprint:
                    reason = "holds another call's progress (other model, points or settings)"
                    state = None
                else:
                    x_adv = x.copy()  # the adversarials found so far
                    x_adv[saved["broken"]] = saved["x_broken"]
                    state = {"done": int(saved["done"]), "robust": saved["robust"].copy(),
                             "clean": saved["clean"].copy(), "x_adv": x_adv,
                             "broken_by": [b or None for b in saved["broken_by"].tolist()],
                             "report": json.loads(str(saved["report"]))}
                    if "pending" in saved.files:  # killed inside stage done + 1
                        state.update(pending=saved["pending"].copy(),
                                     stage_n=int(saved["stage_n"]),
                                     stage_seconds=float(saved["stage_seconds"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            reason, state = f"cannot be read ({type(error).__name__}: {error})", None
        if state is None:
            print(f"{self.name}: {self.resume_file} {reason}; starting over", file=sys.stderr,
                  flush=True)
            return None
        if verbose:
            inside = ("" if state.get("pending") is None else
                      f", {int(state['pending'].sum())} points of stage {state['done'] + 1} "
                      "still to attack")
            print(f"{self.name}: resuming after stage {state['done']}{inside} from "
                  f"{self.resume_file}", file=sys.stderr, flush=True)
        return state

    def _save_state(self, state, fingerprint):
        if fingerprint is None:
            return
        broken = np.flatnonzero(state["clean"] & ~state["robust"])
        folder = os.path.dirname(os.path.abspath(self.resume_file))
        os.makedirs(folder, exist_ok=True)
        # Named per process: two runs on one file (say, a queue started twice)
        # each rename a whole file into place instead of writing into one.
        partial = os.path.join(
            folder, f".{os.path.basename(self.resume_file)}.{os.getpid()}.partial.npz")
        inside = ({} if state.get("pending") is None else
                  {"pending": state["pending"], "stage_n": state["stage_n"],
                   "stage_seconds": state["stage_seconds"]})
        try:
            np.savez_compressed(
                partial, fingerprint=fingerprint, done=state["done"], robust=state["robust"],
                clean=state["clean"], broken=broken, x_broken=state["x_adv"][broken],
                broken_by=np.array([b or "" for b in state["broken_by"]], dtype=str),
                report=json.dumps(state["report"]), **inside)
            os.replace(partial, self.resume_file)
        finally:
            if os.path.exists(partial):
                os.remove(partial)


class AutoAttackFast(AutoAttack):
    """AutoAttack with APGD-CE and APGD-T only (registry name ``"autoattack-fast"``)."""

    name = "autoattack-fast"

    def __init__(self, eps, version="fast", num_steps=100, n_target_classes=9, n_queries=5000,
                 seed=None, resume_file=None, save_every=1000):
        super().__init__(eps, version=version, num_steps=num_steps,
                         n_target_classes=n_target_classes, n_queries=n_queries, seed=seed,
                         resume_file=resume_file, save_every=save_every)
