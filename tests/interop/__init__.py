"""Interoperability tests: Tricolor federating with other homeservers (Synapse)."""
