"""What consumes a build's output: the dataset card and its figures, evaluation and its scores, training
mixtures, previews. Beam-free; they read the output through `pipeline.storage`."""
