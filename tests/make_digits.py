"""Write scikit-learn's bundled 8x8 digits (1,797 images) as 16 px PNGs, one subfolder per
digit, for a real-data check of codes/image_ddpm.py (needs `pip install scikit-learn`).

    python tests/make_digits.py digits
    python codes/image_ddpm.py --data digits --img-size 16 --batch-size 32 --steps 3000
"""
import os
import sys

import imageio.v3 as iio
import numpy as np
from sklearn.datasets import load_digits


def main(folder="digits"):
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        os.makedirs(f"{folder}/{label}", exist_ok=True)
        pixels = (image * 255 / 16).round().astype(np.uint8)  # 0..16 -> 0..255, white on black
        iio.imwrite(f"{folder}/{label}/{i:04d}.png", pixels.repeat(2, 0).repeat(2, 1))
    print(f"wrote {len(digits.images)} images to {folder}/0 ... {folder}/9")


if __name__ == "__main__":
    main(*sys.argv[1:])
