"""edgekit: get trained vision models onto small devices.

Public API: :func:`load` describes a model file as a ModelArtifact; the library modules
(`edgekit.convert`, `edgekit.classify`, `edgekit.inspect`, `edgekit.runtimes`) do the work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    from edgekit.artifact import ModelArtifact


def load(path: str | Path) -> ModelArtifact:
    """Describe the model at `path` (format, io specs, preprocessing, labels, lineage)."""
    from pathlib import Path

    from edgekit.artifact import read_artifact

    return read_artifact(Path(path))
