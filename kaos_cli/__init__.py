"""The kaos command line interface and its Python SDK (`kaos_cli.client.KaosClient`)."""
