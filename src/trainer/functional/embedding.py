"""Placeholder: being written."""


def embedding(*args, **kwargs):
    raise NotImplementedError("embedding")
