"""What every HTTP adapter shares: JSON responses, Matrix error rendering, CORS, body limits.

Sits between the adapters (client_api, federation.inbound) and the services, so both
adapters use one renderer without importing each other.
"""
