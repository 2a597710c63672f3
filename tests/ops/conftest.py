import pytest
import torch


@pytest.fixture(autouse=True)
def exact_fp32_on_gpus():
    """On a GPU, fp32 convolutions default to TF32 (cuDNN), and so do the
    Triton kernels that follow torch's switch: the exactness tests compare
    in full fp32. No effect on CPU."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before
