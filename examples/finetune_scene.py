"""Fine-tune a scene classifier on a folder of class folders, then evaluate it.

Copy this file and change the arguments. With the defaults it trains the test-size ViTAEv2 on
the AID sample next to the repository for a few epochs (CPU, a few minutes):

    python examples/finetune_scene.py --data ../shared/data/aid_150px --epochs 10
    python examples/finetune_scene.py --data data/aid --backbone vitaev2_s \\
        --backbone-checkpoint rsp-vitaev2-s-ckpt.pth --image-size 224 --accelerator gpu

It writes the checkpoint and, from the test split, the confusion matrix (PNG + CSV) into
``--output``, and prints their paths.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# rsfm first: where torchvision's native ops cannot load it registers a fallback before
# Lightning imports torchvision
from rsfm.data import SceneDataModule
from rsfm.tasks import SceneClassificationTask

# isort: split
import lightning.pytorch as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/aid_150px", help="folder of class folders")
    parser.add_argument("--backbone", default="vitaev2_tiny_test", help="any timm model name")
    parser.add_argument("--backbone-checkpoint", help="RSP file or `rsfm export-backbone` output")
    parser.add_argument("--image-size", type=int, default=64, help="model input side in pixels")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit-batches", type=int, help="batches per epoch (quick trials)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--output", default="runs/finetune_scene")
    args = parser.parse_args()

    data = SceneDataModule(
        root=args.data,
        split=(0.6, 0.1, 0.3),
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=0,
    )
    task = SceneClassificationTask(
        backbone=args.backbone,
        backbone_checkpoint=args.backbone_checkpoint,
        lr=1e-3,
        lr_batch_size=None,
        warmup_epochs=1,
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        precision="32-true",
        default_root_dir=args.output,
        limit_train_batches=args.limit_batches,
        limit_val_batches=args.limit_batches,
        log_every_n_steps=1,
    )
    trainer.fit(task, data)
    checkpoint = Path(args.output) / "scene.ckpt"
    trainer.save_checkpoint(checkpoint)
    trainer.test(task, data)
    log_dir = Path(trainer.log_dir)
    print(f"checkpoint: {checkpoint}")
    print(f"confusion matrix: {log_dir / 'confusion_matrix.png'}")


if __name__ == "__main__":
    main()
