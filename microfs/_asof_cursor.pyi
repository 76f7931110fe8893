from typing import Any

import numpy as np
import numpy.typing as npt

def cursor_asof(
    keys: npt.NDArray[np.int64],
    valid: npt.NDArray[np.uint8] | None,
    times: npt.NDArray[np.int64],
    low: int,
    cursors: npt.NDArray[np.int64],
    rights: npt.NDArray[np.int64],
    tolerance: int,
    missing: int,
    out: npt.NDArray[Any],
) -> npt.NDArray[Any]: ...
def cursors_of(keys: npt.NDArray[np.int64], low: int, span: int) -> npt.NDArray[np.int64]: ...
def group_by_slot(
    keys: npt.NDArray[np.int64],
    low: int,
    has_key: npt.NDArray[np.uint8],
    times: npt.NDArray[np.int64],
    cursors: npt.NDArray[np.int64],
    rights: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]: ...
