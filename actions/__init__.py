"""Action registry (names, metadata, param schemas) and, in later issues, the adapters that execute them."""
