from typing import Any

import numpy as np
import numpy.typing as npt

def cursor_asof(
    keys: npt.NDArray[np.int64],
    valid: npt.NDArray[np.uint8],
    times: npt.NDArray[np.int64],
    low: int,
    cursors: npt.NDArray[np.int64],
    rights: npt.NDArray[np.int64],
    tolerance: int,
    missing: int,
    out: npt.NDArray[Any],
) -> npt.NDArray[Any]: ...
