"""seqimpute: sequential imputation policies (Bachman & Precup, NIPS 2015) in PyTorch."""

from .data import load_dataset, mask_sampler
from .errors import SeqImputeError

__version__ = "0.1.0"
__all__ = ["SeqImputeError", "load_dataset", "mask_sampler", "__version__"]
