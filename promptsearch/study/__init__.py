"""The Optuna study: the trial objective, storage and workers, candidates, warm start, Pareto front and final test."""
