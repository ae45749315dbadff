"""Jobs: source -> transforms -> gate -> sink, returning streaming queries."""
