"""Plumbing around lab 5's engine — not the lesson.

- :mod:`server` — the OpenAI-compatible HTTP front end (``mlsys-labs serve``).
- :mod:`api` — request parsing and validation for that server.
- :mod:`loadgen` — the open-loop load generator (``mlsys-labs bench-serve``).
- :mod:`offline_bench` — offline workloads and the Hugging Face peers the benchmarks compare against.
- :mod:`demo` — ``make lab-5``: the figures in lab 5's README.
- :mod:`checkpoint` — builds a small Hugging Face checkpoint locally (random weights, a BPE
  tokenizer trained on ``tokenizer_corpus.txt``) for the tests, the benchmarks and ``serve --model``.
"""
