"""The table imputer: `SequentialImputer` (imputer.py), its column layout (columns.py), scikit-learn's missing-value
conventions around it (missing.py), early stopping (early_stopping.py) and save/load (saved.py). Imported as
`from seqimpute import SequentialImputer`."""
