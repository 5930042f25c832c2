"""Placeholder: being written."""


def gelu(*args, **kwargs):
    raise NotImplementedError("gelu")


def leaky_relu(*args, **kwargs):
    raise NotImplementedError("leaky_relu")


def log_softmax(*args, **kwargs):
    raise NotImplementedError("log_softmax")


def relu(*args, **kwargs):
    raise NotImplementedError("relu")


def sigmoid(*args, **kwargs):
    raise NotImplementedError("sigmoid")


def silu(*args, **kwargs):
    raise NotImplementedError("silu")


def softmax(*args, **kwargs):
    raise NotImplementedError("softmax")


def tanh(*args, **kwargs):
    raise NotImplementedError("tanh")
