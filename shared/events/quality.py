"""Events owned by the quality service, on topic `ceper.quality.v1`, keyed by foundry code or lot code."""

from __future__ import annotations
