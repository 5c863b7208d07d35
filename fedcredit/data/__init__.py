"""Data: USCC ids, schemas per role, loaders for bundled and user data, synthetic SMEs."""
