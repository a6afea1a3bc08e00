"""Training: a ``TrainConfig`` assembled into data, models and objective (``assembly``), the loop that
trains with exact resume (``loop``), model selection through an evaluator (``evaluators``), the resume
state (``checkpoint``), the run log (``log``), run folders a failed run gives back (``outdir``), several
processes (``distributed``) and the hooks tests use to inject faults (``hooks``)."""
