"""AdaptiveAdjust — re-price lagging limit children, within GR063 / FS094.

Consumes:  ``exec.cmd.adjust.<cid>`` AdjustCommand (durable consumer ``adjust``).
Publishes: ``exec.evt.<cid>`` AdjustDone (PRICE_IMPROVE with the replaced children, WAIT, or ESCAPE).
Calls:     ``modify`` (modify_order → ModifyAck) at the execution's venue per re-priced child, after
           checking the HALT fence. The child keeps its client order id; a venue that amends by
           cancel/replace (FIX) maps it to a new ClOrdID per generation itself.
"""

from __future__ import annotations

import time

from bus.runtime import Delivery, Out, Poison, Retry
from core.adjust import AdjustAction, AdjustConfig, decide_adjust
from schemas.enums import ReasonCode
from schemas.messages import AdjustCommand, AdjustDone, ChildReplaced
from schemas.venue import ModifyAck, ModifyOrder
from workers.common import SpecsUnavailable, StageWorker, VenueUnavailable, command_of, config_from_env


class AdjustWorker(StageWorker):
    name = "adjust"
    needs = frozenset({"safety", "market", "venue"})

    async def prepare(self) -> None:
        self.config = config_from_env("JETEXEC_ADJUST_CONFIG", AdjustConfig)

    def consumers(self):
        return [("adjust", self.handle)]

    async def handle(self, d: Delivery) -> list[Out]:
        cmd: AdjustCommand = command_of(d, AdjustCommand)
        venue = self.venue.at(cmd.venue)
        try:
            spec = await self.specs.get(cmd.venue, cmd.symbol)
        except SpecsUnavailable:
            raise Retry("venue reference data unavailable") from None
        if spec is None:
            raise Poison(ReasonCode.VALIDATION_INVALID_SYMBOL.value, f"{cmd.symbol} is not traded at venue {venue.venue}")
        quote = self.market.quotes.get(cmd.symbol)
        if quote is None:
            raise Retry("no quote yet", delay=0.5)
        now = time.time()
        decision = decide_adjust(cmd.side, cmd.children, cmd.arrival_price or quote.reference_price, quote.bid, quote.ask, spec.tick_size, cmd.round, self.config, now=now)
        replaced: list[ChildReplaced] = []
        action = decision.action
        if action is AdjustAction.PRICE_IMPROVE:
            for child in cmd.children:
                new_price = decision.new_prices.get(child.client_order_id)
                if new_price is None:
                    continue
                if self.halted(cmd.cid) or await self.safety.refresh_halt(cmd.cid):
                    action = AdjustAction.WAIT
                    break
                await d.in_progress()  # one venue round trip per child: keep the delivery ours
                try:
                    ack = await venue.call("modify", ModifyOrder(client_order_id=child.client_order_id, new_price=new_price), ModifyAck)
                except VenueUnavailable:
                    raise Retry("venue unreachable during modify") from None
                if ack.accepted:
                    replaced.append(ChildReplaced(cid=cmd.cid, client_order_id=child.client_order_id, new_client_order_id=child.client_order_id, new_price=new_price, generation=child.generation + 1, ts=now))
        fact = AdjustDone(
            cid=cmd.cid,
            step=cmd.step,
            round=cmd.round,
            action=action,
            replaced=tuple(replaced),
            alerts=decision.alerts,
            reason_code=ReasonCode.SLIPPAGE_EXCEEDED if action is AdjustAction.ESCAPE else None,
            ts=now,
        )
        return [self.fact(cmd.cid, fact, f"{cmd.cid}.adjust.{cmd.step}")]
