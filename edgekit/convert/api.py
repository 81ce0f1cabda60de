"""`convert_model`: route, convert into a temporary file, check parity on real photos, then publish."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.artifact import ModelArtifact, lineage_entry
from edgekit.convert.routes import ConvertJob, find_route
from edgekit.convert.settings import ConvertSettings
from edgekit.errors import BadInput
from edgekit.formats import SUFFIX, Format, detect_format
from edgekit.fsutil import atomic_path, refuse_to_replace, size_of
from edgekit.loaders import LoadOptions
from edgekit.output_meaning import with_meaning
from edgekit.parity import TOLERANCES, ParityReport, check, compare, parity_images
from edgekit.preprocess import PRESETS, PreprocessOverrides, resolve_preprocessing
from edgekit.runtimes import open_runner

if TYPE_CHECKING:
    from edgekit.artifact import Preprocessing
    from edgekit.jsontypes import Json
    from edgekit.runtimes import Runner

Progress = Callable[[str], None]


@dataclasses.dataclass
class ConvertOptions(ConvertSettings):
    """ConvertSettings (the typed schema shared with the CLI and recipes) plus what this run reads
    and writes."""

    output: Path | None = None
    force: bool = False  # replace an existing output
    load: LoadOptions = dataclasses.field(default_factory=LoadOptions)
    preprocess: PreprocessOverrides = dataclasses.field(default_factory=PreprocessOverrides)
    labels_file: Path | None = None
    data: Path | None = None  # photos for the parity check (default: the bundled ones)

    @property
    def target(self) -> Format:
        """The target format."""
        return Format(self.to)


@dataclasses.dataclass
class ConvertReport:
    """What a conversion produced and how close it is to its source."""

    source: Path
    output: Path
    source_format: str
    target_format: str
    seconds: float
    source_bytes: int
    output_bytes: int
    parity: ParityReport
    notes: Json

    def to_dict(self) -> Json:
        """JSON form for --json."""
        data = dataclasses.asdict(self)
        data["source"], data["output"] = str(self.source), str(self.output)
        data["parity"]["passed"] = self.parity.passed
        return data


def default_output(source: Path, target: Format) -> Path:
    """model.pt2 -> model.onnx beside it; a SavedModel dir `m/` -> `m.tflite`."""
    return source.with_suffix(SUFFIX[target]) if source.is_file() else source.parent / (source.name + SUFFIX[target])


def read_labels(path: Path | None) -> list[str] | None:
    """Class names, one per line; BadInput if the file is missing or empty."""
    if path is None:
        return None
    if not path.is_file():
        raise BadInput(f"labels file {path} does not exist", fix="give a text file with one class name per line")
    labels = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not labels:
        raise BadInput(f"labels file {path} is empty", fix="give one class name per line")
    return labels


def convert_model(source: Path, options: ConvertOptions, progress: Progress = lambda _: None) -> ConvertReport:
    """Convert `source` to `options.target`, verify it against the source, and write it with its sidecar.

    Nothing is left at the output path if conversion or the parity check fails.
    """
    from edgekit.artifact import read_artifact

    started = time.perf_counter()
    artifact = read_artifact(source)
    converter = find_route(artifact.format, options.target)
    output = options.output or default_output(source, options.target)
    if output.resolve() == source.resolve():
        raise BadInput(f"output {output} would overwrite the source model", fix="choose another -o path")
    refuse_to_replace(output, options.force)
    prep = resolve_preprocessing(artifact.preprocessing, options.preprocess)
    labels = read_labels(options.labels_file) or artifact.labels
    progress(f"loading {source.name} ({artifact.format.value})")
    with open_runner(artifact, threads=options.threads, load=options.load) as source_runner:
        _check_labels(labels, source_runner.outputs())
        with atomic_path(output) as tmp:
            progress(f"converting to {options.target.value}")
            job = ConvertJob(
                artifact,
                source_runner,
                tmp,
                options.opset,
                list(options.load.input_shape) if options.load.input_shape else None,
            )
            notes = converter(job)
            progress(f"checking parity on {options.check_images} real-photo crops")
            parity = _parity(source_runner, artifact, tmp, options, prep)
            check(parity, f"converted model {output.name}")
            result = ModelArtifact(
                path=output,
                format=options.target,
                preprocessing=prep,
                labels=labels,
                precision="fp32",
                lineage=[*artifact.lineage, _lineage(source, options, notes)],
            )
            with open_runner(ModelArtifact(path=tmp, format=options.target), threads=options.threads) as runner:
                result.inputs, result.outputs = runner.inputs(), with_meaning(runner.outputs(), source_runner, runner)
            if options.target is Format.ONNX:
                embed_onnx_metadata(tmp, result)
        result.save()
    return ConvertReport(
        source,
        output,
        artifact.format.value,
        options.target.value,
        time.perf_counter() - started,
        size_of(source),
        size_of(output),
        parity,
        notes,
    )


def _parity(
    source_runner: Runner, artifact: ModelArtifact, tmp: Path, options: ConvertOptions, prep: Preprocessing
) -> ParityReport:
    tolerance, agreement = TOLERANCES["fp32"]
    images = parity_images(options.data, options.check_images)
    with open_runner(ModelArtifact(path=tmp, format=detect_format(tmp)), threads=options.threads) as result_runner:
        outputs = compare(source_runner, result_runner, prep or PRESETS["unit"], images)
        return ParityReport(
            len(images),
            outputs,
            options.tolerance if options.tolerance is not None else tolerance,
            options.min_agreement if options.min_agreement is not None else agreement,
            source_runner.describe(),
            result_runner.describe(),
        )


def _check_labels(labels: list[str] | None, outputs: list[Any]) -> None:
    if not labels or not outputs:
        return
    classes = outputs[0].shape[-1]
    if isinstance(classes, int) and classes != len(labels):
        raise BadInput(
            f"the labels file has {len(labels)} names but the model outputs {classes} classes",
            fix="give the labels file that belongs to this model",
        )


def _lineage(source: Path, options: ConvertOptions, notes: Json) -> Json:
    settings = {
        "to": options.target.value,
        "opset": options.opset,
        "input_shape": options.load.input_shape,
        "arch": options.load.arch,
        **notes,
    }
    return lineage_entry("convert", source, settings)


def embed_onnx_metadata(path: Path, artifact: ModelArtifact) -> None:
    """Store the artifact's JSON in the ONNX file's metadata_props["edgekit"]."""
    import onnx

    model = onnx.load(str(path))
    for prop in [p for p in model.metadata_props if p.key == "edgekit"]:
        model.metadata_props.remove(prop)
    model.metadata_props.add(key="edgekit", value=json.dumps(artifact.to_dict()))
    onnx.save(model, str(path))
