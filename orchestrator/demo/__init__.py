"""The demo: the whole loop on a small synthetic shop, on a simulated clock (``orchestrator demo``).

``_population`` is the shop (customers with contact details and a behaviour model; it also wrote the bundled
history in ``examples/demo``), ``_run`` lives through the days after that history: events ingested, engine
ticks, messages to an outbox folder, and the lift report at the end.
"""

from orchestrator.demo._run import run_demo

__all__ = ["run_demo"]
