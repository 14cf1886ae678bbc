"""seqimpute: sequential imputation policies (Bachman & Precup, NIPS 2015) in PyTorch."""

from .errors import SeqImputeError

__version__ = "0.1.0"
__all__ = ["SeqImputeError", "SequentialImputer", "impute", "load_dataset", "load_pretrained", "mask_sampler",
           "__version__"]

# The public names load torch (and SequentialImputer scikit-learn): imported on first use, not with the package,
# so that `seqimpute --help` and the command line's argument errors answer at once.
_LAZY = {"SequentialImputer": ".tabular.imputer", "impute": ".sampling", "load_dataset": ".data",
         "mask_sampler": ".data", "load_pretrained": ".pretrained"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'seqimpute' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
