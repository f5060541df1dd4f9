"""Learning: the training corpus (data/), the training loop with its batches and resume state, the losses,
and evaluation with its metrics. Nothing on the play path imports this package."""
