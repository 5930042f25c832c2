"""Placeholder: being written."""


def avg_pool1d(*args, **kwargs):
    raise NotImplementedError("avg_pool1d")


def avg_pool2d(*args, **kwargs):
    raise NotImplementedError("avg_pool2d")


def max_pool1d(*args, **kwargs):
    raise NotImplementedError("max_pool1d")


def max_pool2d(*args, **kwargs):
    raise NotImplementedError("max_pool2d")
