"""seqimpute: sequential imputation policies (Bachman & Precup, NIPS 2015) in PyTorch."""

from .data import load_dataset, mask_sampler
from .errors import SeqImputeError
from .sampling import impute

__version__ = "0.1.0"
__all__ = ["SeqImputeError", "SequentialImputer", "impute", "load_dataset", "mask_sampler", "__version__"]


def __getattr__(name):  # SequentialImputer loads scikit-learn: imported on first use, not with the package
    if name == "SequentialImputer":
        from .imputer import SequentialImputer

        return SequentialImputer
    raise AttributeError(f"module 'seqimpute' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"SequentialImputer"})
