"""Plotting of predictions against observations."""

__all__: list[str] = []
