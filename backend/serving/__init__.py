"""Serving the add-on: the protocol (parsing, validation, replies), the request queue and its worker, the stdio
and loopback HTTP transports, and what each request type does (handlers)."""
