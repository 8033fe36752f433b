"""Cold start: ``import ottools`` and the first call with a warm Numba cache."""


class ColdStart:
    timeout = 120

    def timeraw_import(self):
        return "import ottools"

    def timeraw_first_sinkhorn(self):
        return """
        import numpy as np, ottools
        rng = np.random.default_rng(0)
        c = rng.random((50, 40))
        ottools.sinkhorn(None, None, c, 0.05, method="log")
        ottools.sinkhorn(None, None, c, 0.05, method="scaling")
        """

    def timeraw_first_auto(self):
        # The default path: lazy kernel import (Numba) + cached kernels, one small solve.
        return """
        import numpy as np, ottools
        c = np.random.default_rng(0).random((50, 40))
        ottools.sinkhorn(None, None, c, 0.05)
        """
