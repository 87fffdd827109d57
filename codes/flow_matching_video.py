"""GIF of flow_matching.py: points flow from noise (t = 0) to the ring (t = 1) along
dx/dt = v_theta(x, t), each dragging its path behind it.

Run:    python codes/flow_matching_video.py
Writes: outputs/flow_matching.gif
"""
import argparse
import os

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import torch

import flow_matching as fm

FRAMES = 40  # Heun steps, one frame each
HOLD = 12  # extra frames on the final samples before the loop restarts
POINTS = 600  # points drawn
PATHS = 150  # of them, the ones whose paths are drawn


def frames(traj):
    """One RGB image per step of the trajectory (steps + 1, n, 2), then HOLD copies of the last."""
    target = fm.target_sample(2000, torch.Generator().manual_seed(1)).numpy()
    images = []
    for i in range(len(traj)):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(*target.T, s=2, c="0.8", label="target")
        ax.plot(*traj[: i + 1, :PATHS].transpose(2, 0, 1), c="C0", lw=0.5, alpha=0.5)
        ax.scatter(*traj[i].T, s=4, c="C1", label="samples")
        ax.set(title=f"flow matching, t = {i / (len(traj) - 1):.2f}", xlabel="x1", ylabel="x2",
               aspect="equal", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return images + images[-1:] * HOLD


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=fm.STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=POINTS, help="points to draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for the GIF")
    args = p.parse_args(argv)
    if min(args.steps, args.samples) < 1:
        p.error("--steps and --samples must be positive")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    model = fm.train(args.steps, args.seed)[0]
    traj = fm.sample(model, args.samples, args.seed, steps=FRAMES).numpy()
    iio.imwrite(f"{args.out}/flow_matching.gif", frames(traj), duration=80, loop=0)
    print(f"wrote {args.out}/flow_matching.gif")


if __name__ == "__main__":
    main()
