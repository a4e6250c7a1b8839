"""What a visitor's calls must keep to while the Space is attacked."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["assert_kept_answering"]


def assert_kept_answering(latencies: Sequence[float], during: str) -> None:
    """Nine calls in ten under 1 s and none past 3 s. The attacks guarded against froze the event loop for 24 to
    117 s; the attackers share the machine's cores with the app, so one call in ten may be slow."""
    ordered = sorted(latencies)
    assert ordered[len(ordered) * 9 // 10 - 1] < 1.0, f"over 1 s too often during {during}: {ordered}"
    assert ordered[-1] < 3.0, f"up to {ordered[-1]:.2f} s during {during}"
