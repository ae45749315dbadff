"""Great Expectations suites, gates and the quality report."""
