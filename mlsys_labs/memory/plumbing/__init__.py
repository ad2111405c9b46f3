"""Plumbing around the memory mountain — not the lesson.

- :mod:`plot` — the mountain as a heat map and as CS:APP's 3-D surface (Fig. 6.41).
"""
