"""SequentialImputer's fitted state, declared once: what `fit` sets and seqimpute.tabular.saved writes and reads."""

# The attributes imputer.json holds, name -> how JSON holds them. Besides these: the policy (model_), the column
# layout (layout_; JSON, for mixed tables) and the float64 arrays of ARRAYS (and the log-variance), which go into the
# safetensors file, with the starting canvas's Gaussian ("start_mean" (G,), "start_cov" (G, G)) when it has one.
FITTED = {"likelihood_": "str", "seed_": "int", "n_features_in_": "int", "feature_names_in_": "names",
          "n_updates_": "int", "n_skipped_updates_": "int", "loss_": "float_or_nan", "stopped_by_": "str",
          "training_seconds_": "float", "best_iteration_": "int", "validation_score_": "floats",
          "validation_updates_": "ints", "empty_features_": "ints", "indicator_features_": "ints",
          "start_entries_": "ints"}
ARRAYS = ("mean_", "scale_", "fill_")
