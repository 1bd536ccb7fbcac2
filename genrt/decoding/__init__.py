"""Decoding for any model with a step interface (`start / step / reorder / join`): logits processors
(processors.py), search strategies behind one step interface (search.py) and the scheduler that drives any mix of
them in one decoder call per step (scheduler.py)."""
from genrt.decoding.scheduler import Cancelled, Request, Scheduler, decode
from genrt.decoding.search import BeamSampling, BeamSearch, Hypothesis, SampleSearch, Update

__all__ = ["BeamSampling", "BeamSearch", "Cancelled", "Hypothesis", "Request", "SampleSearch", "Scheduler", "Update",
           "decode"]
