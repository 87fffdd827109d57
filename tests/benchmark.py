"""Measure every toy script as a user runs it: whole-process time and fidelity.

For each script in codes/ (the `_video` companions and image_ddpm excepted; new scripts
are picked up automatically), run `python codes/<script>.py --out TMP --seed S` at its
default settings for several seeds, round robin (seed 0 of every script, then seed 1, ...),
then score the saved `<script>_samples.npy`:

- time: median whole-process wall time, start to exit, in seconds, and as a multiple of
  the floor: the median time of a process that imports torch, numpy, matplotlib and
  imageio and takes one torch.optim step, run before each script run (so both see the
  same machine; the multiple holds on a faster or slower one).
- W1/floor: the 1-Wasserstein distance between the generated samples and a fresh target
  sample of the same size (in 2D: averaged over 64 fixed random directions, "sliced"),
  divided by the same distance between two fresh target samples; both are averaged over
  50 fresh draws. 1.0 means "as close as a second real sample".
- each target's own figures (worst over the seeds): mean and std errors, the share of
  samples per mode, the spread inside each mode. Each run's time and figures also go to
  stderr as it ends, so a miss names its seed.
- image rows (--image): the script's own k-NN precision, recall and 1-NN label match,
  and the share of empty samples (no object), which the label match cannot see.

    python tests/benchmark.py                  # all toys, 3 seeds, prints a markdown table
    python tests/benchmark.py --write-readme   # ... and puts it into README.md
    python tests/benchmark.py --image          # adds the image script's CPU recipes
                                               # (the digits need scikit-learn installed)
    python tests/benchmark.py --only multimodal_DDPM --seeds 48 --set STEPS=2500
                                               # a toy with some constants changed

The table between the two marker comments in README.md is this command's output.
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
CODES = ROOT / "codes"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SPIKES = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
RING = 2 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
# the process floor of any PyTorch training script: imports and one torch.optim step
FLOOR = ["-c", "import torch, numpy, matplotlib.pyplot, imageio; "
         "torch.optim.Adam([torch.zeros(1, requires_grad=True)]).step()"]
# the CPU recipes of image_ddpm.py, as given in the README, in order: each name's runs share
# an --out folder, so --sample-only reuses that name's checkpoint. {digits} is a folder that
# tests/make_digits.py fills with scikit-learn's digits, so --image needs scikit-learn.
RECIPE = ["--img-size", "16", "--batch-size", "32", "--steps", "3000"]
IMAGE_RECIPES = [
    ("shapes", [*RECIPE, "--guidance", "3"]),
    ("shapes", ["--img-size", "16", "--sample-only", "--guidance", "0"]),
    ("digits", ["--data", "{digits}", *RECIPE]),
    ("digits", ["--data", "{digits}", "--img-size", "16", "--sample-only", "--guidance", "1"]),
]
# runs a script's main() after setting some of its constants: --set NAME=VALUE ...
WITH_SET = ("import ast, importlib.util, sys\n"
            "spec = importlib.util.spec_from_file_location('script', sys.argv[1])\n"
            "m = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(m)\n"
            "for name, value in (kv.split('=', 1) for kv in sys.argv[2].splitlines()):\n"
            "    name = name.strip()\n"
            "    if not hasattr(m, name):\n"
            "        sys.exit(f'--set {name}: the script has no such constant')\n"
            "    setattr(m, name, ast.literal_eval(value))\n"
            "m.main(sys.argv[3:])\n")


def gaussian(mu, s):
    mu = np.atleast_1d(np.asarray(mu, float))
    return lambda n, rng: mu + s * rng.standard_normal((n, len(mu)))


def four_spikes(n, rng):
    return SPIKES[rng.integers(4, size=n)] + 0.01 * rng.standard_normal((n, 2))


def ring(n, rng):
    """8 equally weighted Gaussians of std 0.1 on a circle of radius 2."""
    return RING[rng.integers(8, size=n)] + 0.1 * rng.standard_normal((n, 2))


def two_modes(n, rng):
    """1:2 mixture of N(-4, 1) and N(4, 1)."""
    return np.where(rng.random((n, 1)) < 2 / 3, 4.0, -4.0) + rng.standard_normal((n, 1))


def swiss_roll(n, rng):
    """sklearn's make_swiss_roll(noise=1.0), coordinates 0 and 2, divided by 10."""
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    xz = np.stack([t * np.cos(t), t * np.sin(t)], 1) + rng.standard_normal((n, 2))
    return xz / 10


# every toy's target: (sampler(n, rng) -> (n, dim), kind of per-target figures)
TARGETS = {
    "simple_1Diffusion": (gaussian(1.0, 0.01), "gaussian"),
    "single_DDPM": (gaussian(1.0, 0.01), "gaussian"),
    "simple_DDPM": (gaussian(1.0, 0.01), "gaussian"),
    "detailed_DDPM": (gaussian(1.0, 0.01), "gaussian"),
    "simple_2Diffusion": (gaussian([-1.0, 1.0], 0.01), "gaussian"),
    "simple_multimodal": (four_spikes, "spikes"),
    "multimodal_DDPM": (four_spikes, "spikes"),
    "elbo_diffusion": (two_modes, "two_modes"),
    "swiss_roll_DDPM": (swiss_roll, "roll"),
    "flow_matching": (ring, "ring"),
}


def w1(x, y, directions=64):
    """1-Wasserstein distance between equal-size samples (n, dim); sliced in 2D+."""
    if x.shape[1] == 1:
        return float(np.abs(np.sort(x[:, 0]) - np.sort(y[:, 0])).mean())
    theta = np.random.default_rng(0).standard_normal((x.shape[1], directions))
    theta /= np.linalg.norm(theta, axis=0)
    return float(np.abs(np.sort(x @ theta, 0) - np.sort(y @ theta, 0)).mean())


def fidelity(x, target, seed=0, draws=50):
    """mean W1(x, fresh target) / mean W1(two fresh targets), over `draws` fresh samples:
    about 1 for a perfect sampler (averaging steadies both against one unlucky draw)."""
    rng = np.random.default_rng(seed + 1000)
    floor = np.mean([w1(target(len(x), rng), target(len(x), rng)) for _ in range(draws)])
    return np.mean([w1(x, target(len(x), rng)) for _ in range(draws)]) / floor


def figures(x, target, kind):
    """The target's own figures of merit, as {name: error}; 0 is perfect."""
    if kind == "gaussian":
        ref = target(200000, np.random.default_rng(0))
        return {"mean err": np.abs(x.mean(0) - ref.mean(0)).max(),
                "std err %": 100 * np.abs(x.std(0) / ref.std(0) - 1).max()}
    if kind in ("spikes", "ring"):
        modes, std = (SPIKES, 0.01) if kind == "spikes" else (RING, 0.1)
        nearest = ((x[:, None] - modes) ** 2).sum(-1).argmin(1)
        offset = x - modes[nearest]
        spread = [offset[nearest == m].std(0).max() if (nearest == m).sum() > 1 else np.inf
                  for m in range(len(modes))]
        shares = np.bincount(nearest, minlength=len(modes)) / len(x)
        r = {"share err": np.abs(shares - 1 / len(modes)).max(),
             "spread err %": 100 * np.abs(np.array(spread) / std - 1).max()}
        if kind == "spikes":
            r["max dist"] = np.linalg.norm(offset, axis=1).max()
        return r
    if kind == "two_modes":
        right, left = x[x[:, 0] > 0, 0], x[x[:, 0] <= 0, 0]
        return {"share>0 err": abs(len(right) / len(x) - 2 / 3),
                "mean err": max(abs(right.mean() - 4), abs(left.mean() + 4)),
                "std err %": 100 * max(abs(right.std() - 1), abs(left.std() - 1))}
    if kind == "roll":  # sliced W1 hardly sees a blurred roll; the distance to its curve does
        s = np.linspace(1.5 * np.pi, 4.5 * np.pi, 4000)
        curve = np.stack([s * np.cos(s), s * np.sin(s)], 1) / 10
        to_curve = lambda y: np.sqrt(((y[:, None] - curve) ** 2).sum(-1)).min(1).mean()
        real = target(len(x), np.random.default_rng(0))
        return {"curve dist ratio": to_curve(x) / to_curve(real)}
    return {}


def timed(argv):
    """Run `python *argv` in a fresh process; returns (wall seconds, stdout)."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{r.stderr[-2000:]}")
    return wall, r.stdout


def run(script, seed, extra=(), out=None, settings=()):
    """Run one script at its defaults (but the constants NAME=VALUE in settings) in `out`
    (default: a fresh temporary folder); returns (wall seconds, samples array, stdout)."""
    path = str(CODES / f"{script}.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = out or tmp
        start = ["-c", WITH_SET, path, "\n".join(settings)] if settings else [path]
        wall, stdout = timed([*start, "--out", out, "--seed", str(seed), *extra])
        return wall, np.load(pathlib.Path(out) / f"{script}_samples.npy"), stdout


def bench_toy(script, seed, settings=()):
    """One run of script: (wall seconds, W1/floor, the target's own figures)."""
    target, kind = TARGETS[script]
    wall, x, _ = run(script, seed, settings=settings)
    return wall, fidelity(x, target, seed), figures(x, target, kind)


def toy_row(script, results, floor):
    """The table row of one toy from its runs' (wall, W1/floor, figures) and the run's floor."""
    walls, ratios, seen = [r[0] for r in results], [r[1] for r in results], {}
    for r in results:
        for k, v in r[2].items():
            seen.setdefault(k, []).append(v)
    details = ", ".join(f"{k} {max(v):.3g}" for k, v in seen.items()) or "-"
    if TARGETS[script][1] == "roll":  # the roll's bar is on the median too
        details += f" (median {np.median(seen['curve dist ratio']):.3g})"
    wall = statistics.median(walls)
    return (f"| {script} | {wall:.1f} | {wall / floor:.2f} | "
            f"{np.median(ratios):.2f} | {max(ratios):.2f} | {details} |")


def empty_share(samples):
    """The share of images (n, S, S, 3) uint8 that show no object: fewer than 1 pixel in 50
    further than 40 (RGB distance, of 255) from the image's median colour. No real shape (at
    least 9% of its pixels, the smallest triangles at 16 px) or digit (25%) is so empty, yet
    the 1-NN label check gives such a tile the class with the smallest objects."""
    c = samples.reshape(len(samples), -1, 3).astype(float)
    far = np.linalg.norm(c - np.median(c, 1, keepdims=True), axis=2) > 40
    return (far.mean(1) < 0.02).mean()


def bench_image(floors):
    """The image recipes, once each (seed 0: they take minutes): (name, argv shown, time, the
    script's own k-NN precision / recall and 1-NN label match against held-out real images,
    and the share of empty samples)."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        digits = f"{tmp}/digits"
        timed([str(ROOT / "tests" / "make_digits.py"), digits])
        for name, argv in IMAGE_RECIPES:
            floors.append(timed(FLOOR)[0])
            argv = [a.format(digits=digits) for a in argv]
            os.makedirs(f"{tmp}/{name}", exist_ok=True)
            wall, _, stdout = run("image_ddpm", 0, argv, out=f"{tmp}/{name}")
            scores = dict(re.findall(r"(precision|recall|label match) ([0-9.]+)", stdout))
            samples = np.load(f"{tmp}/{name}/image_ddpm_samples.npy")
            details = ", ".join(f"{k} {v}" for k, v in scores.items())
            details += f", empty {empty_share(samples):.3f}"
            shown = " ".join(argv).replace(digits, "digits")
            results.append((name, shown, wall, details))
            print(f"image_ddpm {name} {shown}: {wall:.1f} s, {details}", file=sys.stderr)
    return results


def table(seeds, image, only=None, settings=()):
    toys = sorted(p.stem for p in CODES.glob("*.py") if p.stem in TARGETS)
    toys = [s for s in toys if not only or s in only]
    unknown = sorted(p.stem for p in CODES.glob("*.py")
                     if p.stem not in TARGETS and not p.stem.endswith("_video")
                     and p.stem != "image_ddpm")
    if unknown:
        sys.exit(f"no target in TARGETS for: {', '.join(unknown)}")
    rows = [f"| script | time (s) | x floor | W1/floor median | W1/floor worst | "
            f"worst over {seeds} seeds |", "|---|---|---|---|---|---|"]
    floors, results = [], {script: [] for script in toys}
    for seed in range(seeds):  # round robin: a slow spell of the machine hits one seed of many
        for script in toys:  # scripts, not every seed of one script
            floors.append(timed(FLOOR)[0])  # interleaved, so the floor sees the same machine
            results[script].append(bench_toy(script, seed, settings))
            wall, ratio, figs = results[script][-1]  # each run's figures: which seed missed
            print(f"seed {seed} {script}: {wall:.1f} s, floor {floors[-1]:.2f} s, W1/floor "
                  f"{ratio:.2f}" + "".join(f", {k} {v:.3g}" for k, v in figs.items()),
                  file=sys.stderr)
    images = bench_image(floors) if image else []
    floor = statistics.median(floors)  # one floor for every row: the median over the whole run
    rows += [toy_row(script, results[script], floor) for script in toys]
    rows += [f"| image_ddpm {name} `{shown}` | {wall:.1f} | {wall / floor:.1f} | - | - | "
             f"{details} |" for name, shown, wall, details in images]
    rows.append(f"\nfloor: {floor:.2f} s, the median of {len(floors)} runs of "
                f"`python {FLOOR[0]} \"{FLOOR[1]}\"`, interleaved with the scripts' runs.")
    if settings:
        rows.append(f"The toys ran with these constants changed: {', '.join(settings)}.")
    return "\n".join(rows)


def write_readme(md):
    text = README.read_text()
    if START not in text or END not in text:
        sys.exit(f"README.md lacks the markers {START} and {END}")
    head, rest = text.split(START, 1)
    README.write_text(f"{head}{START}\n{md}\n{END}{rest.split(END, 1)[1]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per script")
    p.add_argument("--image", action="store_true", help="add the image CPU recipes")
    p.add_argument("--write-readme", action="store_true", help="put the table into README.md")
    p.add_argument("--only", nargs="+", metavar="SCRIPT", help="just these toys (no .py)")
    p.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE",
                   help="run the toys with these constants changed, e.g. STEPS=2500")
    args = p.parse_args(argv)
    if any("=" not in kv for kv in args.set) or args.set and args.write_readme:
        p.error("--set takes NAME=VALUE pairs, and the README shows the defaults only")
    md = table(args.seeds, args.image, args.only, args.set)
    print(md)
    if args.write_readme:
        write_readme(md)


if __name__ == "__main__":
    main()
