"""Hostile model files: pickles that run code must not run; Keras Lambda layers are refused."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli
from edgekit.errors import BadInput
from edgekit.loaders import LoadOptions
from edgekit.loaders.torch_loader import load_torch_model, pickle_imports


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _hostile_checkpoints(tmp_path: Path, marker: Path) -> list[Path]:
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    zipped = tmp_path / "evil_zip.pt"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("evil_zip/data.pkl", pickle.dumps(_Payload(marker), protocol=2))
        archive.writestr("evil_zip/version", "3\n")
    return [legacy, zipped]


def test_code_running_pickles_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for path in _hostile_checkpoints(tmp_path, marker):
        for command in (["inspect", str(path)], ["convert", str(path), "--to", "onnx", "--input-shape", "1,3,8,8"]):
            result = CliRunner().invoke(cli, command)
            assert result.exit_code == 3, result.stderr
            assert "--trust-pickle" in result.stderr and "Traceback" not in result.stderr
        assert not marker.exists()
        assert any(name.endswith(".system") for name in pickle_imports(path))


def test_whole_module_pickle_needs_trust(torch_models: dict[str, Path]) -> None:
    from edgekit.formats import Format

    with pytest.raises(BadInput, match=r"tests\.tiny_nets\.TinyNet"):
        load_torch_model(torch_models["pickle"], Format.TORCH_CHECKPOINT, LoadOptions())
    model = load_torch_model(torch_models["pickle"], Format.TORCH_CHECKPOINT, LoadOptions(trust_pickle=True))
    assert type(model).__name__ == "TinyNet"


def test_state_dict_pickle_scan_finds_only_torch(torch_models: dict[str, Path]) -> None:
    assert pickle_imports(torch_models["state_dict"]) == set()


def test_keras_lambda_layer_is_refused(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 3 and "Lambda layer" in result.stderr and "safe mode" in result.stderr
