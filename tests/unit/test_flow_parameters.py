"""The medallion flow refuses parameters it cannot honour before it starts anything."""

from __future__ import annotations

import pytest

from flows.medallion import medallion

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"layers": "bronze,silvr"},
            r"layers='bronze,silvr': unknown layer\(s\) \['silvr'\]; known: bronze, silver, gold",
        ),
        ({"layers": " , "}, r"layers=' , ': no layer named; known: bronze, silver, gold"),
        ({"trigger": "continuous"}, r"trigger='continuous': .* use the streaming flow"),
    ],
)
def test_a_parameter_the_flow_cannot_honour_is_named(parameters, message):
    with pytest.raises(ValueError, match=message):
        medallion.fn(profile="no-such-profile", **parameters)
