"""Cold start: ``import ottools`` and the first call with a warm Numba cache.

Each ``timeraw_`` runs in a fresh interpreter, so ``first_*`` includes the import. The
``floor_*`` benchmarks time the same steps for the dependencies alone (see
``common.IMPORT_FLOOR`` / ``common.FIRST_CALL_FLOOR``): compare ratios, not seconds.
"""

from .common import FIRST_CALL_FLOOR, FIRST_SOLVE, IMPORT_FLOOR


class ColdStart:
    timeout = 120

    def timeraw_import(self):
        return "import ottools"

    def timeraw_floor_import(self):
        return IMPORT_FLOOR

    def timeraw_first_sinkhorn(self):
        return """
        import numpy as np, ottools
        rng = np.random.default_rng(0)
        c = rng.random((50, 40))
        ottools.sinkhorn(None, None, c, 0.05, method="log")
        ottools.sinkhorn(None, None, c, 0.05, method="scaling")
        """

    def timeraw_first_auto(self):
        return FIRST_SOLVE

    def timeraw_floor_first_call(self):
        return FIRST_CALL_FLOOR
