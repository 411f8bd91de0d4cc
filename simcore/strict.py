"""Base model for every section of the input formats."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors (the CLI turns them into "did you mean")."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
