"""Federation over RabbitMQ (issue 9): our broker link, the per-destination shovels, the
sending transport and the inbound consumer. The only package that imports aio-pika."""
