"""The test suite: a package, so that its shared settings import as ``tests.helpers``."""
