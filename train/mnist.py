"""Stage `train`: the Keras MNIST CNN, seeded; writes the .keras model, DVC metrics and per-epoch plots."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.artifacts import reproducible
from pipelines.config.network import NetworkSpec, network_spec
from pipelines.core.atomic import atomic_path, write_json, write_text
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ConfigError
from pipelines.data import digits
from pipelines.frameworks.tensorflow_import import tensorflow

log = logging.getLogger(__name__)


def build_model(network: NetworkSpec) -> Any:
    """conv32-conv64-maxpool-dropout-dense128-dropout-softmax, named after the network spec's tensors."""
    tensorflow()  # first, quietly: Keras imports it
    import keras

    (image,), (probabilities,) = network.inputs, network.outputs
    inputs = keras.Input(shape=image.dims, name=image.name)
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(probabilities.dims[0], activation="softmax", name=probabilities.name)(x)
    return keras.Model(inputs, outputs, name=network.name)


def _training_dataset(x: np.ndarray, y: np.ndarray, cfg: Any) -> Any:
    tf = tensorflow()  # first, quietly: Keras imports it
    import keras

    layers = []
    if cfg.augment.translate:
        t = float(cfg.augment.translate)
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="constant", seed=cfg.seed))
    if cfg.augment.rotate:
        layers.append(keras.layers.RandomRotation(float(cfg.augment.rotate), fill_mode="constant", seed=cfg.seed))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=cfg.seed).batch(int(cfg.batch_size))
    if layers:
        augment = keras.Sequential(layers)
        ds = ds.map(lambda a, b: (augment(a, training=True), b))
    return ds.prefetch(2)


def _history_csv(history: dict[str, list[float]]) -> str:
    keys = ["loss", "accuracy", "val_loss", "val_accuracy"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for epoch in range(len(history["loss"])):
        writer.writerow([epoch + 1, *(f"{history[k][epoch]:.6f}" for k in keys)])
    return buf.getvalue()


def run(cfg: Any) -> dict[str, float]:
    """Train on `paths.data`, evaluate on its test split, save model, metrics and history atomically."""
    network = network_spec(cfg.network)
    network.require_reference("keras", "train.mnist")
    if int(cfg.epochs) < 1 or int(cfg.batch_size) < 1:
        raise ConfigError("epochs and batch_size must be >= 1")
    mnist = digits.load_mnist(cfg.paths.data)
    tensorflow()  # first, quietly: Keras imports it
    import keras

    keras.utils.set_random_seed(int(cfg.seed))
    x_train, x_test = digits.to_model_input(mnist.x_train), digits.to_model_input(mnist.x_test)
    model = build_model(network)
    steps = int(cfg.epochs) * -(-len(x_train) // int(cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(float(cfg.learning_rate), steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    log.info("training %d epochs on %d digits (test %d)", cfg.epochs, len(x_train), len(x_test))
    start = time.perf_counter()

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            log.info(
                "epoch %d/%d  loss %.4f  accuracy %.4f  val_accuracy %.4f",
                epoch + 1,
                cfg.epochs,
                logs.get("loss", 0),
                logs.get("accuracy", 0),
                logs.get("val_accuracy", 0),
            )

    history = model.fit(
        _training_dataset(x_train, mnist.y_train, cfg),
        epochs=int(cfg.epochs),
        validation_data=(x_test, mnist.y_test),
        verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        callbacks=[Progress()],
    ).history
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, mnist.y_test, verbose=0)
    with atomic_path(cfg.paths.keras_model, suffix=".keras") as tmp:
        model.save(tmp)
        reproducible.keras_archive(Path(tmp))  # no save date or object ids: the same training, the same bytes
    # what two identical runs agree on (committed with the code): no timings, which the log line carries
    metrics = {"test_accuracy": round(float(accuracy), 6), "test_loss": round(float(loss), 6)}
    write_json(cfg.paths.train_metrics, metrics)
    write_text(cfg.paths.train_history, _history_csv(history))
    log.info("test accuracy %.4f, loss %.4f (%.1f s); saved %s", accuracy, loss, seconds, cfg.paths.keras_model)
    return metrics


main = hydra_main("train", run, __doc__)

if __name__ == "__main__":
    main()
