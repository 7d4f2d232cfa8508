"""``tiergate demo``: the whole system on one machine, with emulated GPUs.

Three emulated vLLM tiers (on-prem, cloud, managed API), the cascade gateway in front of them,
and a real trace replayed through it, time-compressed, with the on-prem tier broken part-way
and healed later; a live view, then a cost summary. See :func:`tiergate.demo.run.run_demo`.
"""
