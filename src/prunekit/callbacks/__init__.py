"""Hooks into other training loops, as optional extras.

``prunekit.callbacks.hf.PruningCallback`` (needs ``transformers``, extra ``hf``) and
``prunekit.callbacks.lightning.PruningCallback`` (needs ``lightning``, extra ``lightning``) both
call a ``(step, model)`` callable, e.g. a :class:`prunekit.schedules.Stepper`, after every
optimizer step. prunekit's own loop takes the same callable as ``train(..., on_step=...)``.
Neither module is imported here, so ``import prunekit`` never needs the optional libraries.
"""
