"""Benchmark harness for long-poll pub/sub servers speaking the golongpoll protocol.

Run it as ``python -m bench SCENARIO ...``; see ``bench/README.md``.
"""
