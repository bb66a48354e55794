"""``prunekit compress``: a save directory's weights in the compressed sparse format (bitmask,
CSR or block CSR per tensor, whichever is smallest; ``prunekit.sparse.save_compressed``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from prunekit.errors import PrunekitError
from prunekit.io import read_metadata
from prunekit.persist import load
from prunekit.sources import load_model


def compress_command(
    directory: Annotated[Path, typer.Argument(help="prunekit save directory (prunekit.save).")],
    out: Annotated[
        Path | None,
        typer.Option(help="File to write [default: DIRECTORY/model.compressed.safetensors]."),
    ] = None,
) -> None:
    """Write the saved model's weights as one compressed safetensors file (masks baked, zeros
    not stored) and print its size against the dense weights; load it back with
    ``prunekit.sparse.load_compressed``."""
    from prunekit.masks import bake_masks
    from prunekit.sparse import save_compressed

    target = out if out is not None else directory / "model.compressed.safetensors"
    try:
        arch = read_metadata(directory).arch or {}
        spec = arch.get("model")
        if spec:
            source = load_model(str(spec), kwargs=arch.get("kwargs") or {})
            model = load(directory, source.model)
        else:
            model = load(directory)
        bake_masks(model)  # a freshly loaded copy: nothing of the user's is changed
        dense = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        path = save_compressed(model, target)
    except PrunekitError as err:
        message = " ".join(str(err).split())
        Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(2) from None
    size = path.stat().st_size
    Console().print(
        f"{path}: {size / 1e6:.2f} MB, {size / dense:.2f}x the dense tensors "
        f"({dense / 1e6:.2f} MB)",
        highlight=False,
        soft_wrap=True,
    )
