"""Adapters the services reach the outside world through, other than federation:
push gateways (HTTP) and mail (SMTP)."""
