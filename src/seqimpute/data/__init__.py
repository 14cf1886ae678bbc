from .masks import mask_sampler, mask_set
from .sources import REGISTRY, Dataset, data_root, get_dataset, load_dataset, load_splits

__all__ = ["REGISTRY", "Dataset", "data_root", "get_dataset", "load_dataset", "load_splits", "mask_sampler", "mask_set"]
