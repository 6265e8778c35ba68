"""A Q-learning run's table as an MLflow pyfunc model: raw observations in, their Q-values out.

Raw observations [B, raw_dim], as the environment emits them (a Discrete observation: its index; a
Box: its values) -> the table's rows Q(s, .) [B, n_actions] float64; the greedy action is their argmax.
The row of an observation is found as the policy-evaluator finds it (``QTableSpec.states`` in
``ftg_common/policy/qtable.py``; docs/qlearning.md): discrete components combined in mixed radix, Box
dimensions cut into uniform bins (outliers clipped to the edge bins) and combined likewise.

Logged as a "model from code" (see :mod:`workflows.policy_model`): MLflow stores this source and two
artifacts (the table as safetensors, the spec as JSON), so no pickle is involved and numpy,
safetensors and MLflow are all that serving needs; hence the row lookup is written out here rather
than imported from the project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

TABLE = "table"  # artifact names, as passed to log_model
SPEC = "spec"


class QTableModel(PythonModel):
    """Row lookup in a Q-table."""

    def load_context(self, context: Any) -> None:
        """Read the table and its spec from the model's artifacts."""
        from safetensors.numpy import load_file

        spec = json.loads(Path(context.artifacts[SPEC]).read_text())
        self.table = load_file(context.artifacts[TABLE])["q_table"]
        self.binned = spec["kind"] == "bins"
        self.sizes = np.asarray(spec["sizes"], dtype=np.int64)
        self.starts = np.asarray(spec.get("starts") or [0] * len(self.sizes), dtype=np.int64)
        self.low = np.asarray(spec.get("low") or [], dtype=np.float64)
        self.high = np.asarray(spec.get("high") or [], dtype=np.float64)
        # Place value of each component in the row number: the product of the sizes after it.
        self.place = np.ones(len(self.sizes), dtype=np.int64)
        for k in range(len(self.sizes) - 2, -1, -1):
            self.place[k] = self.place[k + 1] * self.sizes[k + 1]

    def rows(self, model_input: np.ndarray) -> np.ndarray:
        """Row of each raw observation [B, raw_dim] (other trailing shapes are flattened) -> [B] int64.

        Raises:
            ValueError: the observations are not [B, raw_dim], or hold a value outside the table.
        """
        x = np.asarray(model_input)
        x = x.reshape(x.shape[0], -1) if x.ndim != 2 else x
        if x.shape[1] != len(self.sizes):
            raise ValueError(
                f"observations must be [B, {len(self.sizes)}], got shape {np.shape(model_input)}"
            )
        if self.binned:
            scaled = np.nan_to_num((x.astype(np.float64) - self.low) / (self.high - self.low), nan=0.0)
            digit = np.clip(np.floor(np.clip(scaled, 0.0, 1.0) * self.sizes), 0, self.sizes - 1).astype(
                np.int64
            )
        else:
            digit = np.rint(x).astype(np.int64) - self.starts
            if not np.array_equal(digit + self.starts, x) or np.any((digit < 0) | (digit >= self.sizes)):
                raise ValueError(
                    f"observations must be whole numbers in [start, start + n) per component: "
                    f"{self.starts.tolist()}, {self.sizes.tolist()}"
                )
        rows: np.ndarray = digit @ self.place
        return rows

    # np.ndarray keeps the schema MLflow inferred from the input example (see policy_model.py).
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """The table's rows Q(s, .), float64 [B, n_actions], of raw observations (see :meth:`rows`).

        ``context`` is MLflow's model context (unused after loading); ``params`` is unused.
        """
        out: np.ndarray = self.table[self.rows(model_input)]
        return out


set_model(QTableModel())
