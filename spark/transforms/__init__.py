"""Pure DataFrame -> DataFrame transformations."""
