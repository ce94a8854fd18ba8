"""Stage workers. Each folder holds one worker; its ``handler.py`` says what it consumes and publishes.

``WORKERS`` maps the CLI name (``jetexec worker NAME``) to the WorkerApp class path.
"""

WORKERS: dict[str, str] = {
    "gateway": "workers.gateway.handler:GatewayWorker",
    "coordinator": "workers.coordinator.handler:CoordinatorWorker",
    "precheck": "workers.precheck.handler:PrecheckWorker",
    "split": "workers.split.handler:SplitWorker",
    "send": "workers.send.handler:SendWorker",
    "monitor": "workers.monitor.handler:MonitorWorker",
    "adjust": "workers.adjust.handler:AdjustWorker",
    "escape": "workers.escape.handler:EscapeWorker",
    "ledger": "workers.ledger.handler:LedgerWorker",
    "paper-exchange": "workers.paper_exchange.handler:PaperExchangeWorker",
}

# Real venue adapters: run only when a venue of their kind is configured (``JETEXEC_VENUES``), so they
# are not part of every deployment (no Kubernetes manifest or NATS user of their own yet).
VENUE_WORKERS: dict[str, str] = {
    "venue-fix": "workers.venue_fix.handler:FixVenueWorker",
}
ALL_WORKERS: dict[str, str] = {**WORKERS, **VENUE_WORKERS}
VENUE_WORKER_OF_KIND = {"fix": "venue-fix"}


def load_worker(name: str) -> type:
    import importlib

    try:
        module_name, cls_name = ALL_WORKERS[name].split(":")
    except KeyError:
        raise KeyError(f"unknown worker {name!r}; one of: {', '.join(ALL_WORKERS)}") from None
    return getattr(importlib.import_module(module_name), cls_name)
