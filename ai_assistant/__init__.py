"""The AI assistant: an application service (its own process, `tricolor ai-assistant`, or
in the homeserver's process) that answers PATIENT messages in rooms that opted in, with an
external AI service, and records every exchange. It talks to the homeserver only through
the Application Service API and the client-server API with its as_token."""
