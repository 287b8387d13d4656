"""A plugin module that fails on import, for tests/test_bad_inputs.py (``wsol --import plugin_that_raises``)."""

raise RuntimeError("this plugin is broken on purpose")
