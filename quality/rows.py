"""Which rows an expectation rejects, as a Spark column.

Great Expectations reports how many rows violate a map expectation, not which, unless
it collects every unexpected row to the driver (``COMPLETE``). A ``drop`` check instead
gets its failing-row predicate here, mirroring the expectation's Spark implementation
exactly (including which nulls it ignores), so the rows quarantined under a check's
name are the rows Great Expectations finds unexpected. The gate also counts and samples
the unexpected rows of a check that is not met with it (one Spark job for all of them,
instead of Great Expectations' one or two per expectation); a unit test holds every
supported kind to Great Expectations' own count and unexpected values.
"""

from __future__ import annotations

import great_expectations as gx
from pyspark.sql import Column
from pyspark.sql import functions as F

expect = gx.expectations


def failing_rows(expectation: gx.expectations.Expectation) -> Column:
    """True for the rows that violate ``expectation`` (never null)."""
    predicate = _predicate(expectation)
    return F.coalesce(predicate, F.lit(False))


def unexpected_values(expectation: gx.expectations.Expectation) -> Column:
    """The values Great Expectations shows of an unexpected row, in a struct (never null,
    so a null value is kept as an example too): the column's, or the pair's."""
    if isinstance(expectation, expect.ExpectColumnPairValuesAToBeGreaterThanB):
        return F.struct(F.col(expectation.column_A), F.col(expectation.column_B))
    return F.struct(F.col(expectation.column))


def supports_rows(expectation: gx.expectations.Expectation) -> bool:
    """Whether ``failing_rows`` knows this kind of expectation."""
    return isinstance(expectation, _SUPPORTED)


_SUPPORTED = (
    expect.ExpectColumnValuesToNotBeNull,
    expect.ExpectColumnValuesToBeInSet,
    expect.ExpectColumnValuesToMatchRegex,
    expect.ExpectColumnValuesToBeBetween,
    expect.ExpectColumnPairValuesAToBeGreaterThanB,
)


def _predicate(expectation: gx.expectations.Expectation) -> Column:
    if isinstance(expectation, expect.ExpectColumnValuesToNotBeNull):
        return F.col(expectation.column).isNull()
    if isinstance(expectation, expect.ExpectColumnValuesToBeInSet):
        column = F.col(expectation.column)
        return column.isNotNull() & ~column.isin(list(expectation.value_set))
    if isinstance(expectation, expect.ExpectColumnValuesToMatchRegex):
        column = F.col(expectation.column)
        return column.isNotNull() & ~column.rlike(expectation.regex)
    if isinstance(expectation, expect.ExpectColumnValuesToBeBetween):
        return _outside(expectation)
    if isinstance(expectation, expect.ExpectColumnPairValuesAToBeGreaterThanB):
        return _not_greater(expectation)
    raise ValueError(
        f"no row predicate for {type(expectation).__name__}: a drop check needs one of "
        f"{', '.join(kind.__name__ for kind in _SUPPORTED)}"
    )


def _outside(expectation: expect.ExpectColumnValuesToBeBetween) -> Column:
    column = F.col(expectation.column)
    within = F.lit(True)
    if expectation.min_value is not None:
        low = F.lit(expectation.min_value)
        within = within & (column > low if expectation.strict_min else column >= low)
    if expectation.max_value is not None:
        high = F.lit(expectation.max_value)
        within = within & (column < high if expectation.strict_max else column <= high)
    return column.isNotNull() & ~within


def _not_greater(expectation: expect.ExpectColumnPairValuesAToBeGreaterThanB) -> Column:
    column_a, column_b = F.col(expectation.column_A), F.col(expectation.column_B)
    if expectation.or_equal:
        greater = (column_a >= column_b) | column_a.eqNullSafe(column_b)
    else:
        greater = column_a > column_b
    considered = {
        "both_values_are_missing": column_a.isNotNull() | column_b.isNotNull(),
        "either_value_is_missing": column_a.isNotNull() & column_b.isNotNull(),
        "neither": F.lit(True),
    }[expectation.ignore_row_if]
    return considered & ~greater
