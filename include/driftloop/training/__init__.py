"""Training stage: PyCaret model selection on a snapshot, holdout evaluation, logging and registration."""
