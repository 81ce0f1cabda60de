"""PyTorch backend: runs the source model so conversions can be checked against it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgekit.artifact import TensorSpec
from edgekit.errors import BadInput, first_line
from edgekit.formats import Format
from edgekit.loaders.torch_loader import exported_program, import_torch, load_torch_model
from edgekit.preprocess import guess_layout
from edgekit.runtimes import Runner, RunnerOptions

if TYPE_CHECKING:
    import torch

    from edgekit.artifact import ModelArtifact
    from edgekit.loaders import LoadOptions


def torch_input_shape(artifact: ModelArtifact, load: LoadOptions) -> list[int]:
    """The input shape: --input-shape, else the sidecar, else the .pt2 program's example input."""
    if load.input_shape:
        return list(load.input_shape)
    if artifact.inputs and all(isinstance(d, int) for d in artifact.inputs[0].shape):
        return [int(d) for d in artifact.inputs[0].shape]  # type: ignore[arg-type]
    if artifact.format is Format.PT2:
        program = exported_program(artifact.path)
        for node in program.graph.nodes:
            if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
                return [int(d) for d in node.meta["val"].shape]
    raise BadInput(f"{artifact.path} does not record its input shape", fix="pass --input-shape 1,3,224,224")


class TorchRunner(Runner):
    """A torch module in eval mode under inference_mode, on the CPU."""

    def __init__(self, artifact: ModelArtifact, options: RunnerOptions) -> None:
        self._torch = import_torch()
        if options.threads:
            self._torch.set_num_threads(options.threads)
        self.model = load_torch_model(artifact.path, artifact.format, options.load)
        shape = torch_input_shape(artifact, options.load)
        layout = artifact.inputs[0].layout if artifact.inputs and artifact.inputs[0].layout else guess_layout(shape)
        self._inputs = [TensorSpec(name="input", shape=list(shape), dtype="float32", layout=layout)]
        try:
            probe = self.infer([np.zeros(shape, np.float32)])
        except Exception as exc:
            raise BadInput(
                f"{artifact.path} does not accept input shape {shape} ({first_line(exc, 200)})",
                fix="pass the right --input-shape",
            ) from exc
        self._outputs = [
            TensorSpec(name=f"output_{i}", shape=list(o.shape), dtype="float32") for i, o in enumerate(probe)
        ]

    def example_input(self) -> torch.Tensor:
        """A zero tensor of the input shape, for exporters."""
        return self._torch.zeros(self._inputs[0].shape)

    def inputs(self) -> list[TensorSpec]:
        """The one image input."""
        return self._inputs

    def outputs(self) -> list[TensorSpec]:
        """Outputs, as seen on a probe run."""
        return self._outputs

    def infer(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Run one batch."""
        with self._torch.inference_mode():
            result = self.model(*[self._torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in feeds])
        items = result if isinstance(result, (tuple, list)) else [result]
        return [item.detach().cpu().numpy() for item in items]

    def graph_output_meaning(self) -> str | None:
        """From an exported program's output node, or an nn.Module's last submodule; None for
        TorchScript (judged from the values)."""
        from edgekit.output_meaning import LOGITS, PROBABILITIES

        torch = self._torch
        if isinstance(self.model, torch.jit.ScriptModule):
            return None
        if isinstance(self.model, torch.fx.GraphModule):
            output = next((n for n in self.model.graph.nodes if n.op == "output"), None)
            first = output.args[0] if output is not None and output.args else None
            first = first[0] if isinstance(first, (tuple, list)) and first else first
            target = str(getattr(first, "target", ""))
            return PROBABILITIES if "softmax" in target and "log_softmax" not in target else LOGITS
        modules = list(self.model.modules()) if isinstance(self.model, torch.nn.Module) else []
        if not modules:
            return None
        return PROBABILITIES if isinstance(modules[-1], torch.nn.Softmax) else LOGITS

    def describe(self) -> str:
        """e.g. 'torch 2.13.0+cpu'."""
        return f"torch {self._torch.__version__}"
