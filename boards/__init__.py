"""Board definitions: one module per board builds the drivers the firmware needs."""
