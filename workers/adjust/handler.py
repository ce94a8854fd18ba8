"""AdaptiveAdjust — re-price lagging limit children, within GR063 / FS094.

Consumes:  ``exec.cmd.adjust.<cid>`` AdjustCommand (durable consumer ``adjust``).
Publishes: ``exec.evt.<cid>`` AdjustDone (PRICE_IMPROVE with the replaced children, WAIT, or ESCAPE).
Calls:     ``modify`` (modify_order → ModifyAck) at the execution's venue per re-priced child, after
           checking the HALT fence. The child keeps its client order id; a venue that amends by
           cancel/replace (FIX) maps it to a new ClOrdID per generation itself.
"""

from __future__ import annotations

import json
import os
import time

import msgspec

from bus.runtime import Delivery, Out, Retry, WorkerApp
from bus.topology import evt_subject
from core.adjust import AdjustAction, AdjustConfig, decide_adjust
from schemas.codec import encode
from schemas.enums import ReasonCode
from schemas.messages import AdjustCommand, AdjustDone, ChildReplaced
from schemas.venue import ModifyAck, ModifyOrder
from workers.common import MarketData, SafetyView, VenueClient, VenueUnavailable, command_of, venues_from_env


class AdjustWorker(WorkerApp):
    name = "adjust"

    async def setup(self) -> None:
        self.safety = SafetyView()
        await self.safety.start(self.js)
        self.market = MarketData()
        await self.market.start(self.nc)
        self.venue = VenueClient(self.nc, default_venue=venues_from_env().default)
        self.config = msgspec.convert(json.loads(os.environ.get("JETEXEC_ADJUST_CONFIG", "{}")), AdjustConfig, strict=False)
        self.specs: dict = {}

    def consumers(self):
        return [("adjust", self.handle)]

    async def handle(self, d: Delivery) -> list[Out]:
        cmd: AdjustCommand = command_of(d, AdjustCommand)
        venue = self.venue.at(cmd.venue)
        if (venue.venue, cmd.symbol) not in self.specs:
            try:
                self.specs.update({(venue.venue, s): spec for s, spec in (await venue.specs()).items()})
            except Exception:
                raise Retry("venue reference data unavailable") from None
        quote = self.market.quotes.get(cmd.symbol)
        if quote is None:
            raise Retry("no quote yet", delay=0.5)
        now = time.time()
        decision = decide_adjust(cmd.side, cmd.children, cmd.arrival_price or quote.reference_price, quote.bid, quote.ask, self.specs[(venue.venue, cmd.symbol)].tick_size, cmd.round, self.config, now=now)
        replaced: list[ChildReplaced] = []
        action = decision.action
        if action is AdjustAction.PRICE_IMPROVE:
            for child in cmd.children:
                new_price = decision.new_prices.get(child.client_order_id)
                if new_price is None:
                    continue
                if self.safety.is_halted(cmd.cid) or await self.safety.refresh_halt(cmd.cid):
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
            action=action.value,
            replaced=tuple(replaced),
            alerts=decision.alerts,
            reason_code=ReasonCode.SLIPPAGE_EXCEEDED if action is AdjustAction.ESCAPE else None,
            ts=now,
        )
        return [Out(evt_subject(cmd.cid), encode(fact), f"{cmd.cid}.adjust.{cmd.step}")]
