"""A GIF of swiss_roll_DDPM.py's reverse process: noise turning into the roll.

Trains the sibling script's model with the same flags, runs Algorithm 2 once, and draws the
samples every few levels t = T .. 0 on fixed axes, a fresh roll in grey behind them.

Run:    python codes/swiss_roll_DDPM_video.py  [--steps N --samples N --seed S --out DIR --show]
Writes: outputs/swiss_roll_DDPM.gif
"""
import argparse
import os
import sys

import imageio.v2 as imageio
import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swiss_roll_DDPM as roll  # noqa: E402  (the sibling script)

FRAME_EVERY = 4  # draw every FRAME_EVERY-th level
HOLD = 15  # frames that hold the result at the end
FPS = 15  # frames per second
SHOWN = 1000  # points drawn per frame


def frames(traj, seed):
    """One RGB image per drawn level of traj (T + 1, n, 2), x_T first."""
    target = roll.target_sample(SHOWN, torch.Generator().manual_seed(seed))
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    images = []
    for i in [*range(0, roll.T + 1, FRAME_EVERY), *[roll.T] * HOLD]:
        ax.clear()
        ax.scatter(*target.T, s=2, c="0.8", label="target")
        ax.scatter(*traj[i, :SHOWN].T, s=2, c="C0", label="generated")
        ax.set(title=f"reverse process: x_{roll.T - i}", xlim=(-2, 2), ylim=(-2, 2), xlabel="x",
               ylabel="z", aspect="equal")
        ax.legend(loc="upper right", fontsize=7)
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    plt.close(fig)
    return images


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=roll.STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=roll.SAMPLES, help="points to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for the GIF")
    p.add_argument("--show", action="store_true", help="show the last frame")
    args = p.parse_args(argv)
    if min(args.steps, args.samples) < 1:
        p.error("--steps and --samples must be positive")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    model, _ = roll.train(args.steps, args.seed)
    images = frames(roll.sample(model, args.samples, args.seed), args.seed)
    imageio.mimsave(f"{args.out}/swiss_roll_DDPM.gif", images, duration=1000 / FPS, loop=0)
    print(f"wrote {args.out}/swiss_roll_DDPM.gif")
    if args.show:
        plt.imshow(images[-1])
        plt.show()
    return {"gif": f"{args.out}/swiss_roll_DDPM.gif", "frames": len(images)}


if __name__ == "__main__":
    main()
