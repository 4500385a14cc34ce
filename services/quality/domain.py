"""Quality's domain: specifications, sampling plans, certificates, lots and quality status. Pure: no I/O."""

from __future__ import annotations
