"""`ceper chaos`: the whole platform as separate processes, two replicas of each domain service, a seeded
business scenario, faults (processes killed, rebalances, the broker and PostgreSQL restarted, the buyers'
webhook endpoint away, poison messages), then checks that nothing was lost, applied twice or left stuck.

`run.py` runs it; `platform.py` owns the processes, `plan.py` what the seed decides, `scenario.py` the
business, `faults.py` the faults, `receiver.py` the webhook endpoint, `checks.py` the verdicts.
"""

from .run import ChaosOptions, run_chaos

__all__ = ["ChaosOptions", "run_chaos"]
