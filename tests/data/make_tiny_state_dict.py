"""How tests/data/tiny_state_dict.pth was made: real torch (2.13.0+cpu), its legacy (non-zip) format, and the
same values as NumPy arrays in tiny_state_dict.npz, which tests/test_encoders.py compares encoders.py's reader with.

Not run by the tests (the project does not need PyTorch); to remake the files, from tests/data/:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python make_tiny_state_dict.py

The tensors cover what a reader can get wrong: a convolution and a BatchNorm as a network's
state dict holds them (with the int64 scalar counter), a non-contiguous tensor, one at an
offset into a storage it shares with another, and every dtype NumPy has beside float32.
"""

import collections

import numpy as np
import torch

torch.manual_seed(0)
conv = torch.nn.Conv2d(3, 4, 3, bias=False)
bn = torch.nn.BatchNorm2d(4)
bn.running_mean.uniform_(-1, 1)
bn.running_var.uniform_(0.5, 2)
bn.num_batches_tracked.fill_(7)
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
state = collections.OrderedDict()
for name, tensor in conv.state_dict().items():
    state["conv." + name] = tensor
for name, tensor in bn.state_dict().items():
    state["bn." + name] = tensor
state["transposed"] = base.t()  # not contiguous: strides (1, 6)
state["slice"] = base[1:3, 2:]  # an offset into base's storage, shared with "transposed"
state["float16"] = torch.linspace(-2, 2, 5, dtype=torch.float16)
state["float64"] = torch.tensor([[1.5, -2.25], [1e-300, 3.0]], dtype=torch.float64)
state["int32"] = torch.tensor([-3, 0, 2**31 - 1], dtype=torch.int32)
state["bool"] = torch.tensor([True, False, True])
state["uint8"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
torch.save(state, "tiny_state_dict.pth", _use_new_zipfile_serialization=False)
np.savez("tiny_state_dict.npz", **{k: v.numpy() for k, v in state.items()})
print(torch.__version__, {k: (tuple(v.shape), str(v.dtype)) for k, v in state.items()})
