"""Plumbing around lab 1's autograd engine — not the lesson.

- :mod:`demo` — ``mlsys-labs run 1`` / ``make lab-1``: trains the MLP and the CNN with
  progress bars, plots their learning curves, and measures and plots this machine's
  memory mountain, all under ``reports/lab1/`` (the figures in lab 1's README).
"""
