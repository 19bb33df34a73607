"""``rsfm fit|validate|test|predict``: Lightning's own CLI over the classes a YAML config names."""

from __future__ import annotations

from typing import List


def main(argv: List[str]) -> None:
    """``LightningCLI`` with ``argv`` = the subcommand and its options; the task and datamodule
    classes come from the config's class paths."""
    from lightning.pytorch.cli import LightningCLI

    LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=argv,
    )
