"""Placeholder: being written."""


def cross_entropy(*args, **kwargs):
    raise NotImplementedError("cross_entropy")


def mse_loss(*args, **kwargs):
    raise NotImplementedError("mse_loss")


def nll_loss(*args, **kwargs):
    raise NotImplementedError("nll_loss")
