"""Classify image files with a trained scene checkpoint and print the top classes.

python examples/classify_images.py runs/finetune_scene/scene.ckpt img1.jpg img2.tif
"""

from __future__ import annotations

import argparse

import rsfm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help=".ckpt written by rsfm fit or examples/finetune_scene.py")
    parser.add_argument("images", nargs="+", help="JPEG/PNG/GeoTIFF files")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()

    classifier = rsfm.SceneClassifier.load(args.checkpoint)
    for path, prediction in zip(args.images, classifier.predict(args.images)):
        ranked = ", ".join(f"{name} {probability:.2f}" for name, probability in prediction.top(args.top))
        print(f"{path}: {ranked}")


if __name__ == "__main__":
    main()
