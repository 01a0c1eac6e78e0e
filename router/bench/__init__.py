"""Load harness for OpenAI-compatible servers: `hybrid-router bench`.

workload.py   JSONL / ShareGPT files → WorkItem
arrivals.py   when each request is sent (Poisson, gamma, constant)
client.py     one streamed request → RequestRecord (timings, headers, usage)
runner.py     open-loop and closed-loop load, warm-up, limits, generator health
stats.py      percentiles, TTFT / ITL / TPOT, goodput, tier mix, cost
prices.py     price table for "cost vs all-frontier"
report.py     terminal table, JSON, Markdown
plots.py      PNG plots (matplotlib, imported only when plotting)
mock.py       a fast OpenAI- and Anthropic-compatible mock upstream (raw asyncio protocol)
cli.py        argparse entry point
"""
