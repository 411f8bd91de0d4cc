"""Size and popularity distributions of the workload format.

``size: {dist: lognormal, median: 500B, p75: 2KiB}`` fits a lognormal to a
median and a 75th percentile, which is how population data are usually
published (Meta fleet, 2022: 50 % of JIT images under 500 B, 75 % under
2 KiB; 20221128190245.2337461-1-song@kernel.org).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from simcore.strict import Strict
from simcore.units import Size

# z-score of the 75th percentile of a standard normal
Z75 = 0.6744897501960817


class Fixed(Strict):
    dist: Literal["fixed"]
    value: Size = Field(gt=0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


class Uniform(Strict):
    dist: Literal["uniform"]
    min: Size = Field(gt=0)
    max: Size = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if self.max < self.min:
            raise ValueError("max must be at least min")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.min, self.max + 1, size=n, dtype=np.int64)


class LogNormal(Strict):
    dist: Literal["lognormal"]
    median: Size = Field(gt=0)
    p75: Size = Field(gt=0)
    max: Size | None = Field(default=None, gt=0, description="clip larger draws")

    @model_validator(mode="after")
    def _order(self) -> LogNormal:
        if self.p75 <= self.median:
            raise ValueError("p75 must be larger than median")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        mu = math.log(self.median)
        sigma = (math.log(self.p75) - mu) / Z75
        out = np.maximum(1, np.rint(rng.lognormal(mu, sigma, size=n))).astype(np.int64)
        if self.max is not None:
            np.minimum(out, self.max, out=out)
        return out


SizeDist = Annotated[Union[Fixed, Uniform, LogNormal], Field(discriminator="dist")]  # noqa: UP007


class Popularity(Strict):
    """Which of N objects an event picks: uniform, Zipf(s), or a hot set."""

    zipf: float | None = Field(default=None, gt=0, le=5)
    hot: float | None = Field(default=None, gt=0, le=1, description="share of objects")
    hot_share: float = Field(default=0.9, gt=0, le=1, description="share of events")

    @model_validator(mode="after")
    def _one(self) -> Popularity:
        if self.zipf is not None and self.hot is not None:
            raise ValueError("give either zipf or hot, not both")
        return self

    def weights(self, n: int) -> np.ndarray:
        """Probability of each object, objects in rank order."""
        if n == 0:
            return np.zeros(0)
        if self.zipf is not None:
            w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** self.zipf
        elif self.hot is not None:
            k = max(1, round(self.hot * n))
            w = np.full(n, (1 - self.hot_share) / max(1, n - k))
            w[:k] = self.hot_share / k
            if k == n:
                w[:] = 1.0 / n
        else:
            w = np.ones(n)
        return w / w.sum()
