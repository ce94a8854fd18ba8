"""``python -m workers.ledger``: run the ledger worker (same as ``jetexec worker ledger`` once the
worker is registered in ``workers.WORKERS``)."""

from __future__ import annotations

import asyncio
import logging
import os

from bus.settings import NatsSettings
from workers.ledger.handler import LedgerWorker


def main() -> None:
    logging.basicConfig(level=os.environ.get("JETEXEC_LOG_LEVEL", "WARNING"), format="%(asctime)s ledger %(levelname)s %(message)s")
    asyncio.run(LedgerWorker(NatsSettings.from_env()).serve(int(os.environ["JETEXEC_METRICS_PORT"]) if os.environ.get("JETEXEC_METRICS_PORT") else None))


if __name__ == "__main__":
    main()
