"""The reliability suite (``make reliability``): hostile input, faults, kills and corruption, each area a
module with ``run(scale) -> list[Check]``; :mod:`.run` gathers them into a dated report."""
