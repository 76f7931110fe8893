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
def group_by_slot(
    slots: npt.NDArray[np.int64],
    has_key: npt.NDArray[np.uint8],
    times: npt.NDArray[np.int64],
    cursors: npt.NDArray[np.int64],
    rights: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]: ...
