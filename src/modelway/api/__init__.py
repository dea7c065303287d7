"""The HTTP edge: routes parse, hand to the pipeline, and encode; nothing else."""
