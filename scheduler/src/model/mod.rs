//! Pure domain logic: no I/O, no clocks read, no randomness. Tested by examples and properties.
