"""Hostile-input tests (issue 10): property tests, hostile files, the OpenAPI fuzzer, the authorization matrix.

Every property runs twice: a bounded number of examples in the default run (CI), and many more under the
`reliability` marker (`make test-reliability`). A test asks for `depth` and calls `depth.explore(body, ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings

THOROUGH_FACTOR = 25
"""How many times more examples a property gets under `-m reliability`."""


@dataclass(frozen=True)
class Depth:
    thorough: bool

    def examples(self, fast: int) -> int:
        return fast * THOROUGH_FACTOR if self.thorough else fast

    def explore(self, body, fast: int, **strategies) -> None:
        """Run `body` as a hypothesis property over `strategies` with `examples(fast)` examples."""
        settings(
            max_examples=self.examples(fast),
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.filter_too_much,
            ],
        )(given(**strategies)(body))()


@pytest.fixture(
    params=[
        pytest.param(False, id="ci"),
        pytest.param(True, id="thorough", marks=pytest.mark.reliability),
    ]
)
def depth(request: pytest.FixtureRequest) -> Depth:
    return Depth(thorough=request.param)


