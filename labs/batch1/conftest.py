"""Lab 1's test configuration."""


def pytest_configure(config):
    # The `step(k)` marker (the README step a test belongs to) is registered by the
    # grading plugin; registering it here too keeps --strict-markers happy either way.
    config.addinivalue_line("markers", "step(k): the README step a test belongs to")
