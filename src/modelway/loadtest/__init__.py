"""`modelway loadtest`: a load generator for any OpenAI-compatible chat endpoint.

Open loop (a fixed arrival rate, requests launched on schedule whether or not earlier
ones finished) or closed loop (a fixed number of workers sending back to back), with
the metrics of vLLM's ``benchmark_serving``: TTFT, TPOT, ITL, end-to-end latency,
request and output-token throughput.
"""

from modelway.loadtest.report import Summary, summarize
from modelway.loadtest.request import Outcome
from modelway.loadtest.runner import LoadSpec, run_load

__all__ = ["LoadSpec", "Outcome", "Summary", "run_load", "summarize"]
