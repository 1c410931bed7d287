"""``exhaustive``: every task set of ``sweep.orders`` is trained; nothing is estimated
(Standley, Zamir, Chen, Guibas, Malik & Savarese, "Which Tasks Should Be Learned Together in
Multi-task Learning?", ICML 2020)."""

from __future__ import annotations

from .base import Strategy


class Exhaustive(Strategy):
    name = "exhaustive"

    def first_stage_orders(self) -> list[int]:
        return sorted(set(self.sweep["orders"]))
