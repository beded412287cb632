"""Where a model runs: the CUDA device of this process, or the CPU."""

import torch

from squatpose.errors import SquatposeError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: the CUDA device of this rank when there is one, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SquatposeError("params.yaml: train.device is cuda, but no CUDA device is available")
    return torch.device("cuda", local_rank)
