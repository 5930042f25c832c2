"""Pictures: the confusion matrix, the worst mistakes and the decision boundary as images."""

from __future__ import annotations

import io

import pytest
import torch
from callback_helpers import (
    Blobs,
    RecordingLogger,
    quiet_trainer,
    read_events,
    recipe,
    tensorboard_logger,
)
from lightning.pytorch.callbacks import Callback
from PIL import Image

from trainer.callbacks import Pictures
from trainer.callbacks.pictures import confusion_figure, mosaic, worst_examples_figure

CONFUSION, WORST, BOUNDARY = ("pictures/confusion_matrix", "pictures/worst_examples",
                              "pictures/decision_boundary")


def fit(tmp_path, shape, pictures, epochs=2, classes=3):
    trainer = quiet_trainer(tmp_path, [pictures], tensorboard_logger(tmp_path),
                            max_epochs=epochs)
    model = recipe(input_shape=shape, num_classes=classes)
    # Close classes: some validation samples stay misclassified.
    trainer.fit(model, datamodule=Blobs(shape, classes, separation=0.15, batch_size=32,
                                        eval_batch_size=16))
    return trainer, read_events(tmp_path).Tags()["images"]


@pytest.mark.parametrize("shape, expected", [
    ((1, 8, 8), {CONFUSION, WORST}),   # images
    ((2,), {CONFUSION, BOUNDARY}),      # points in the plane
    ((1, 12), {CONFUSION}),             # signals
])
def test_draws_what_suits_the_data(tmp_path, shape, expected):
    _, images = fit(tmp_path, shape, Pictures(every_n_epochs=1))
    assert set(images) == expected


def test_draws_every_nth_epoch_and_the_last(tmp_path):
    pictures = Pictures(every_n_epochs=2)
    trainer = quiet_trainer(tmp_path, [pictures], tensorboard_logger(tmp_path), max_epochs=4)
    trainer.fit(recipe(input_shape=(2,)), datamodule=Blobs((2,), batch_size=32))
    events = read_events(tmp_path)
    steps_per_epoch = trainer.global_step // 4
    drawn = [event.step for event in events.Images(CONFUSION)]
    assert drawn == [steps_per_epoch * epoch for epoch in (1, 3, 4)]  # epochs 0, 2, 3 (last)
    assert [event.step for event in events.Images(BOUNDARY)] == drawn
    image = Image.open(io.BytesIO(events.Images(CONFUSION)[0].encoded_image_string))
    assert image.size[0] < 500 and image.size[1] < 500  # small figures


class Predictions(Callback):
    """The last validation epoch's labels and predictions, worked out separately."""

    def on_validation_epoch_start(self, trainer, pl_module):
        self.labels, self.predicted = [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        self.labels.append(batch[1])
        self.predicted.append(pl_module(batch[0]).argmax(-1))


def test_confusion_matrix_counts_the_validation_predictions(tmp_path):
    pictures, predictions = Pictures(every_n_epochs=1), Predictions()
    trainer = quiet_trainer(tmp_path, [pictures, predictions], tensorboard_logger(tmp_path),
                            max_epochs=1)
    trainer.fit(recipe(input_shape=(1, 8, 8), num_classes=4),
                datamodule=Blobs((1, 8, 8), 4, separation=0.15, batch_size=32,
                                 eval_batch_size=8))
    labels, predicted = torch.cat(predictions.labels), torch.cat(predictions.predicted)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    assert torch.equal(pictures.matrix, expected)
    wrong = int((labels != predicted).sum())
    assert 0 < len(pictures.worst) == min(wrong, 16)
    assert all(true != guess for _, _, true, guess in pictures.worst)
    p_true = [p for p, _, _, _ in pictures.worst]
    assert p_true == sorted(p_true)  # the most confident mistakes first


def test_draws_nothing_without_tensorboard_and_leaves_no_hook(tmp_path):
    pictures = Pictures(every_n_epochs=1)
    model = recipe(input_shape=(1, 8, 8))
    trainer = quiet_trainer(tmp_path, [pictures], RecordingLogger(), max_epochs=1)
    trainer.fit(model, datamodule=Blobs((1, 8, 8), batch_size=32))
    assert pictures.drawn == []
    assert not any(m._forward_hooks for m in model.modules())


def test_figures_render_small():
    from torch.utils.tensorboard._utils import figure_to_image

    names = ["T-shirt/top", "Trouser", "Pullover"]
    confusion = figure_to_image(confusion_figure(torch.tensor([[5, 1, 0], [0, 7, 2],
                                                               [1, 0, 9]]), names))
    worst = figure_to_image(worst_examples_figure(
        [(0.1, torch.rand(1, 28, 28), 0, 2), (0.2, torch.rand(1, 28, 28), 1, 0)], names))
    assert confusion.shape[0] == 3 and max(confusion.shape[1:]) <= 400
    assert worst.shape[0] == 3 and max(worst.shape[1:]) <= 400


def test_mosaic_places_each_image_scaled_into_0_1():
    images = [torch.full((1, 2, 2), 5.0), torch.arange(4.0).reshape(1, 2, 2)]
    sheet = mosaic(images, columns=2, pad=1)
    assert sheet.shape == (1, 4, 7)
    assert torch.equal(sheet[0, 1:3, 4:6], torch.tensor([[0, 1 / 3], [2 / 3, 1]]))
    assert sheet[0, 0].sum() == 0


def test_refuses_bad_settings():
    with pytest.raises(ValueError, match="every_n_epochs"):
        Pictures(every_n_epochs=0)


@pytest.mark.parametrize("count, side", [(2, 8), (16, 8), (5, 28), (16, 28)])
def test_each_caption_sits_over_its_image(count, side):
    worst = [(0.1, torch.rand(1, side, side), 0, 1) for _ in range(count)]
    axes = worst_examples_figure(worst, ["a", "b"]).axes[0]
    columns, pad = min(count, 8), 2
    for index, caption in enumerate(axes.texts):
        x, _ = caption.get_position()
        left = pad + (index % columns) * (side + pad)
        assert x == pytest.approx(left + side / 2)
