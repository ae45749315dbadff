"""Reading and writing: sources, Delta sinks, table registration."""
