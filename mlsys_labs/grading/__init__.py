"""Grading: starter copies (``starter``), the grader (``grader``) and the pytest plugin
that carries the lab conventions — points, hidden tests, GPU skips, seeds — into every
test run (``pytest_plugin``)."""
