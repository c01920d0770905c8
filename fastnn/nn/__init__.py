"""``fastnn.nn``: a small layer library on fastnn's dispatched kernels.

Every convolution, pooling and activation goes through the public kernels
(``fastnn.conv_forward``, ``pool_backward``, ``relu``, ...), so ``fastnn.use_backend(name)``
switches the whole network. A minimal training loop::

    import fastnn.nn as nn
    model = nn.make_cnn((64, 64, 3), channels=(8, 16, 32), dtype="float32", seed=0)
    loss, opt = nn.BinaryCrossEntropy(from_logits=True), nn.Adam(lr=0.002)
    for epoch in range(20):
        cost, acc = nn.train_epoch(model, loss, opt, X, Y, batch_size=16, seed=0, epoch=epoch)
    model.save("cnn.npz")                 # spec + parameters in one .npz
    model = nn.Sequential.load("cnn.npz")

Modules: :mod:`.layers` (Conv2D, MaxPool2D, AvgPool2D, ReLU, Sigmoid, Flatten, Dense),
:mod:`.model` (Sequential, save/load, the atomic ``.npz`` writer), :mod:`.losses`,
:mod:`.optim` (SGD, Adam), :mod:`.training` (seeded mini-batches, the epoch loop, prediction,
make_cnn), :mod:`.progress` (the progress display) and :mod:`.trainer` (whole training runs of
the course's dense network and the ConvNet: what ``fastnn train`` calls; checkpoints, resume,
prediction).
"""

from .layers import LAYER_TYPES, AvgPool2D, Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU, Sigmoid
from .losses import BinaryCrossEntropy, SoftmaxCrossEntropy
from .model import FORMAT, ModelMismatchError, Sequential, read_npz, write_npz
from .optim import OPTIMIZERS, SGD, Adam
from .progress import Progress
from .training import accuracy, batch_gradients, make_cnn, minibatches, predict_proba, run_epoch, train_epoch
from . import trainer

__all__ = [
    "Layer", "Conv2D", "MaxPool2D", "AvgPool2D", "ReLU", "Sigmoid", "Flatten", "Dense", "LAYER_TYPES",
    "BinaryCrossEntropy", "SoftmaxCrossEntropy",
    "Sequential", "ModelMismatchError", "read_npz", "write_npz", "FORMAT",
    "SGD", "Adam", "OPTIMIZERS",
    "minibatches", "run_epoch", "batch_gradients", "train_epoch", "predict_proba", "accuracy", "make_cnn",
    "Progress", "trainer",
]
