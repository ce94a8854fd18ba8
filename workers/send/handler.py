"""AsyncSend — child orders to the venue, at most once per client order id.

Consumes:  ``exec.cmd.send.<cid>`` SendCommand (durable consumer ``send``).
Publishes: ``exec.evt.<cid>`` ChildAccepted | ChildRejected; in SHADOW mode also the simulated
           fill on ``venue.report.<cid>`` (nothing is routed).
Calls:     ``new`` (send_order → OrderAck) and ``query`` (by client order id) at the child's venue
           (``venue.<id>.api.<op>``; the default venue on ``venue.api.<op>``), via the one venue client.
Reads:     the HALT fence in KV ``SAFETY`` before every venue call.
Refuses:   a child whose execution's mode may not route to its venue (a PAPER child to a live
           venue: ``core.venue_protocol.route_refusal``) — before anything is sent.

Retries (tenacity): exponential backoff with jitter and a cap, at most 3 attempts, only for
RETRYABLE errors. An ambiguous outcome (timeout, no responders) is resolved by *querying the venue
by client order id before anything is re-sent*, so the venue never sees a child twice; the venue
also refuses a repeated client order id. If the venue stays unreachable the command is redelivered
later and finally dead-lettered, which makes the coordinator escape.
"""

from __future__ import annotations

import time

import tenacity

from bus import tracing
from bus.runtime import Delivery, Out, Retry
from bus.topology import evt_subject, report_subject
from core.retry import RetryPolicy, tenacity_kwargs
from schemas.codec import encode
from schemas.enums import ErrorClass, ExecutionMode, OrderState, ReasonCode
from schemas.messages import ChildAccepted, ChildRejected, SendCommand
from schemas.venue import ExecutionReport, NewOrder, OrderAck
from workers.common import StageWorker, VenueClient, VenueUnavailable, command_of, route_refusal_for


FRESH_COMMAND_S = 2.0


class _RetryableReject(Exception):
    def __init__(self, ack: OrderAck) -> None:
        super().__init__(ack.reject_reason)
        self.ack = ack


class SendWorker(StageWorker):
    name = "send"
    ack_sync = True  # a venue side effect happened: make sure the ack is not lost
    needs = frozenset({"safety", "market", "venue"})

    async def prepare(self) -> None:
        self.policy = RetryPolicy()

    def consumers(self):
        return [("send", self.handle)]

    async def handle(self, d: Delivery) -> list[Out]:
        cmd: SendCommand = command_of(d, SendCommand)
        child = cmd.child
        tracing.annotate(symbol=child.symbol, side=child.side, client_order_id=child.client_order_id)
        subject = evt_subject(cmd.cid)
        msg_id = f"{cmd.cid}.send.{child.client_order_id}"
        # The fence as the SAFETY watch has it (no KV read per order): a child sent in the moment
        # before the watch shows a just-set fence is live at the venue when its ack comes back,
        # and the coordinator escapes it by name then (core.coordinator, ChildAccepted in ESCAPING).
        if self.halted(cmd.cid):
            fact = ChildRejected(cid=cmd.cid, client_order_id=child.client_order_id, reason_code=ReasonCode.HALTED, error_class=ErrorClass.NON_RETRYABLE, detail="escape fence set", ts=time.time())
            return [self.fact(cmd.cid, fact, msg_id)]
        if cmd.mode is ExecutionMode.SHADOW:
            return self._shadow(cmd, subject, msg_id)
        refusal = route_refusal_for(self.venues, cmd.mode, child.venue)
        if refusal is not None:
            fact = ChildRejected(cid=cmd.cid, client_order_id=child.client_order_id, reason_code=ReasonCode.POLICY_LIVE_NOT_ENABLED, error_class=ErrorClass.NON_RETRYABLE, detail=refusal, ts=time.time())
            return [self.fact(cmd.cid, fact, msg_id)]

        venue = self.venue.at(child.venue)
        order = NewOrder(client_order_id=child.client_order_id, cid=cmd.cid, symbol=child.symbol, side=child.side, qty=child.qty, order_type=child.order_type, price=child.price, mode=cmd.mode)
        attempts = 0
        # A command that waited long may be a re-publication (a restarted coordinator re-sends its
        # recent outbox; a restarted server forgets the ids of consumed work): ask the venue first.
        fresh = time.time() - (cmd.issued_at or 0) < FRESH_COMMAND_S
        try:
            async for attempt in tenacity.AsyncRetrying(**tenacity_kwargs(self.policy, self._retryable)):
                with attempt:
                    attempts += 1
                    if attempts > 1:
                        await d.in_progress()  # retries may outlast the ack wait: not dead yet
                    ack = await self._send_once(venue, order, first=attempts == 1 and d.num_delivered == 1 and fresh)
        except VenueUnavailable:
            raise Retry("venue unreachable; outcome unknown, will query before any re-send", delay=1.0) from None
        except _RetryableReject as exc:
            ack = exc.ack
        if ack.accepted:
            fact = ChildAccepted(cid=cmd.cid, client_order_id=child.client_order_id, venue_order_id=ack.venue_order_id, attempts=attempts, ts=time.time())
        else:
            fact = ChildRejected(
                cid=cmd.cid,
                client_order_id=child.client_order_id,
                reason_code=ack.reason_code or ReasonCode.VENUE_REJECTED,
                error_class=ack.error_class or ErrorClass.NON_RETRYABLE,
                detail=ack.reject_reason,
                attempts=attempts,
                ts=time.time(),
            )
        return [self.fact(cmd.cid, fact, msg_id)]

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        return isinstance(exc, (VenueUnavailable, _RetryableReject))

    async def _send_once(self, venue: VenueClient, order: NewOrder, first: bool) -> OrderAck:
        if not first:
            # The previous attempt (here, or before a crash/redelivery) may have reached the venue.
            status = await venue.query(order.client_order_id)
            if status.found:
                return OrderAck(accepted=status.state is not None and status.state is not OrderState.REJECTED, client_order_id=order.client_order_id, venue_order_id=status.venue_order_id, reject_reason="" if status.state and status.state is not OrderState.REJECTED else "rejected earlier")
        if self.safety.is_halted(order.cid):
            return OrderAck(accepted=False, client_order_id=order.client_order_id, reject_reason="escape fence set", reason_code=ReasonCode.HALTED, error_class=ErrorClass.NON_RETRYABLE)
        ack = await venue.call("new", order, OrderAck)  # a CLIENT span + jetexec_venue_call_seconds
        if ack.reason_code is ReasonCode.DUPLICATE_CLIENT_ORDER_ID:
            # We sent it before (an ack lost on the way back): the venue has it, so it is ours.
            status = await venue.query(order.client_order_id)
            if status.found and status.state is not None and status.state is not OrderState.REJECTED:
                return OrderAck(accepted=True, client_order_id=order.client_order_id, venue_order_id=status.venue_order_id)
        if not ack.accepted and ack.error_class is ErrorClass.RETRYABLE:
            raise _RetryableReject(ack)
        return ack

    def _shadow(self, cmd: SendCommand, subject: str, msg_id: str) -> list[Out]:
        """SHADOW: full pipeline, fills simulated at the venue's price, nothing routed."""
        child = cmd.child
        q = self.market.quotes.get(child.symbol)
        if q is None:
            raise Retry("no quote yet for shadow fill", delay=0.5)
        price = (q.ask if child.side.value == "BUY" else q.bid) or q.reference_price
        now = time.time()
        vid = f"SHADOW-{child.client_order_id}"
        ack = ChildAccepted(cid=cmd.cid, client_order_id=child.client_order_id, venue_order_id=vid, ts=now)
        fill = ExecutionReport(kind="FILL", cid=cmd.cid, client_order_id=child.client_order_id, venue_order_id=vid, trade_id=f"{child.client_order_id}-S1", qty=child.qty, price=price, cum_qty=child.qty, ts=now, venue=child.venue)
        return [Out(subject, encode(ack), msg_id), Out(report_subject(cmd.cid), encode(fill), f"rpt.{fill.trade_id}")]
