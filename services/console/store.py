"""The console stores nothing authoritative: it reads the three APIs and keeps a live feed in memory."""
